"""`Accelerator(log_with=XpTracker())` for Hugging Face Accelerate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xpkit.integrations._common import attach, flat_config, framework_missing, scalars

try:
    from accelerate.tracking import GeneralTracker
except ImportError as e:
    raise framework_missing("accelerate", "accelerate", "accelerate") from e

if TYPE_CHECKING:
    from xpkit.tracking import Run


class XpTracker(GeneralTracker):
    """An Accelerate tracker over the current xpkit run: `accelerator.init_trackers(
    name, config=...)` records the config, `accelerator.log(values, step=...)` the
    metrics, `accelerator.end_training()` flushes. Main process only."""

    name = "xpkit"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, run: Run | None = None) -> None:
        super().__init__()
        self._run = run

    @property
    def tracker(self) -> Run:
        self._run = attach(self._run)
        return self._run

    def start(self) -> None:
        self._run = attach(self._run)

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        config = flat_config(values)
        if config:
            self.tracker.set_config(config)

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        metrics = scalars(values)
        if metrics:
            self.tracker.log(metrics, step=step)

    def finish(self) -> None:
        self.tracker.flush()
