"""`model.fit(..., callbacks=[XpCallback()])` for Keras 3, on any backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xpkit.errors import XpError
from xpkit.integrations._common import attach, flat_config, framework_missing, scalars

try:
    import keras
except ImportError as e:
    raise framework_missing("keras", "keras", "keras") from e

if TYPE_CHECKING:
    from xpkit.tracking import Run

LOG_FREQS = ('"epoch"', '"batch"', "a number of batches")


class XpCallback(keras.callbacks.Callback):
    """Logs `model.fit` into the current xpkit run.

    `log_freq="epoch"` (default) logs each epoch's metrics at step = epoch, so a fit
    resumed with `initial_epoch=` continues the same steps; `"batch"` or a number N
    also logs training metrics every (N) batches, at step = the global batch number,
    and then epoch metrics at the step the epoch ended. The fit's parameters and the
    optimizer's config go to the run's config. A resumable run asked to stop ends the
    fit after the current batch.
    """

    def __init__(self, log_freq: str | int = "epoch", run: Run | None = None) -> None:
        super().__init__()
        if log_freq == "batch":
            log_freq = 1
        if not (log_freq == "epoch" or (type(log_freq) is int and log_freq > 0)):
            raise XpError(
                f"XpCallback(log_freq={log_freq!r}): use {', '.join(LOG_FREQS)} (a positive int)"
            )
        self.log_freq = log_freq
        self._every = None if log_freq == "epoch" else int(log_freq)  # batches
        self._run = run
        self._batch_step = 0

    @property
    def run(self) -> Run:
        self._run = attach(self._run)
        return self._run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        config = flat_config({"fit": self.params or {}})
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "get_config"):
            config.update(flat_config({"optimizer": optimizer.get_config()}))
        self.run.set_config(config)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        steps = (self.params or {}).get("steps")
        if steps:  # a fit resumed at initial_epoch continues the batch numbers
            self._batch_step = max(self._batch_step, epoch * steps)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batch_step += 1
        if self._every and self._batch_step % self._every == 0 and logs:
            self.run.log(scalars(logs), step=self._batch_step)
        if self.run.should_stop:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {**scalars(logs or {}), "epoch": epoch}
        step = self._batch_step if self._every else epoch
        self.run.log(values, step=step)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.run.flush()
