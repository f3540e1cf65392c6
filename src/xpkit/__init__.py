"""xpkit: every ML run tied to its exact code, isolated, recorded and reportable.

import xpkit as xp
run = xp.init()
run.log({"loss": 0.3}, step=10)
"""

from __future__ import annotations

from xpkit.errors import XpError
from xpkit.tracking import Run, current_run, init

__version__ = "0.1.0"
__all__ = ["Run", "XpError", "__version__", "current_run", "init", "log"]


def log(metrics: dict[str, object], step: int | None = None) -> None:
    """Log to the current run (see `init`)."""
    run = current_run()
    if run is None:
        raise XpError("xp.log() needs a run: call `run = xp.init()` first")
    run.log(metrics, step=step)
