"""xpkit: every ML run tied to its exact code, isolated, recorded and reportable.

import xpkit as xp

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module
run = xp.init()
run.log({"loss": 0.3}, step=10)
"""

from __future__ import annotations

from xpkit.errors import XpError

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module
if TYPE_CHECKING:
    from typing import Any

    from xpkit.config.build import build
    from xpkit.config.files import load_config
    from xpkit.config.targets import register
    from xpkit.tracking import Run, current_run, init

__version__ = "0.1.0"
__all__ = [
    "Run", "XpError", "__version__", "build", "current_run", "init", "load_config", "log",
    "register",
]  # fmt: skip
# The API loads on first use, so that the `xp` command line, which imports this
# package too, does not pay for it.
_LAZY = {
    "Run": "xpkit.tracking",
    "current_run": "xpkit.tracking",
    "init": "xpkit.tracking",
    "build": "xpkit.config.build",
    "register": "xpkit.config.targets",
    "load_config": "xpkit.config.files",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xpkit' has no attribute {name!r}")


def log(metrics: dict[str, object], step: int | None = None) -> None:
    """Log to the current run (see `init`)."""
    from xpkit.tracking import current_run

    run = current_run()
    if run is None:
        raise XpError("xp.log() needs a run: call `run = xp.init()` first")
    run.log(metrics, step=step)
