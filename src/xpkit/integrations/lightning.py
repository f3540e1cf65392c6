"""`Trainer(logger=XpLogger())` for Lightning (`import lightning.pytorch`).

For the older package name (`import pytorch_lightning`) use
`xpkit.integrations.pytorch_lightning.XpLogger`: Lightning checks a logger's class
against the package the Trainer comes from.
"""

from __future__ import annotations

from xpkit.integrations._common import framework_missing
from xpkit.integrations._lightning_logger import build_logger_class

try:
    import lightning.pytorch as _package
except ImportError as e:
    raise framework_missing("lightning", "lightning", "lightning") from e

XpLogger = build_logger_class(_package)

__all__ = ["XpLogger"]
