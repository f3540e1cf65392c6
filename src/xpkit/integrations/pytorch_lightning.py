"""`Trainer(logger=XpLogger())` for the `pytorch_lightning` package (Lightning's older
import name); for `lightning.pytorch` use `xpkit.integrations.lightning.XpLogger`."""

from __future__ import annotations

from xpkit.integrations._common import framework_missing
from xpkit.integrations._lightning_logger import build_logger_class

try:
    import pytorch_lightning as _package
except ImportError as e:
    raise framework_missing("pytorch_lightning", "pytorch-lightning", "pytorch-lightning") from e

XpLogger = build_logger_class(_package)

__all__ = ["XpLogger"]
