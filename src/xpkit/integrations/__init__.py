"""One-line hooks from the training frameworks into the current run.

    from xpkit.integrations.lightning import XpLogger          # Lightning (lightning.pytorch)
    from xpkit.integrations.pytorch_lightning import XpLogger  # the older package name
    from xpkit.integrations.transformers import XpCallback     # Hugging Face Trainer
    from xpkit.integrations.keras import XpCallback            # Keras 3, any backend
    from xpkit.integrations.accelerate import XpTracker        # Accelerate

Each module imports its framework, and only when it is imported: `import xpkit` never does.
"""
