"""The Lightning `Logger` over an xpkit run, built for either package that ships the
Logger API (`lightning.pytorch`, `pytorch_lightning`): the same code, two base classes."""

from __future__ import annotations

import os
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpkit.integrations._common import attach, flat_config, scalars
from xpkit.settings import XP_CKPT_DIR, XP_RUN_DIR

if TYPE_CHECKING:
    from xpkit.tracking import Run


def build_logger_class(package: Any) -> type:
    """`XpLogger` subclassing `package.loggers.Logger` (package: the Lightning module)."""
    base = package.loggers.Logger
    rank_zero_experiment = package.loggers.logger.rank_zero_experiment
    rank_zero_only = package.utilities.rank_zero_only

    class XpLogger(base):  # type: ignore[misc, valid-type]
        """Logs a Lightning Trainer into the current xpkit run.

        `Trainer(logger=XpLogger())`. Hyperparameters go to the run's config (flat,
        dotted keys), metrics to metrics.jsonl at Lightning's global step, checkpoints
        into the run's record. `name` is the run's experiment ID and `version` the run's
        id (`XP_RUN_ID`), the same on every attempt of a resumable run, so the default
        checkpoint folder `<save_dir>/<name>/<version>/checkpoints` (`save_dir`:
        `XP_CKPT_DIR` in a resumable run, else the run directory), is found again by
        `trainer.fit(ckpt_path="last")`. Only rank zero records anything.
        """

        def __init__(
            self, run: Run | None = None, save_dir: str | os.PathLike[str] | None = None
        ) -> None:
            super().__init__()
            self._run = run
            self._save_dir = None if save_dir is None else str(save_dir)
            # Lightning logs a batch's metrics after the checkpoint that holds the batch;
            # those lines are written at once, or a resumed attempt would never log them.
            self._flush_below = -1

        # --- where ------------------------------------------------------------------
        def _identity(self) -> tuple[str, str, str | None]:
            """(name, id, run directory) without starting a run on other ranks."""
            run = self.experiment if rank_zero_only.rank == 0 else self._run
            if run is not None:
                return run.id, run.run_id, str(run.dir)
            run_dir = XP_RUN_DIR.get()
            if run_dir is None:
                return "xpkit", "0", None
            from xpkit.store.rundir import RunDir

            info = RunDir(run_dir).read_run()
            return info["experiment_id"], str(info.get("id") or info["name"]), str(run_dir)

        @property
        def name(self) -> str:
            return self._identity()[0]

        @property
        def version(self) -> str:
            return self._identity()[1]

        @property
        def save_dir(self) -> str | None:
            if self._save_dir is not None:
                return self._save_dir
            checkpoints = XP_CKPT_DIR.get()
            return str(checkpoints) if checkpoints is not None else self._identity()[2]

        @property
        def root_dir(self) -> str | None:
            return self.save_dir

        @property
        def log_dir(self) -> str | None:
            return self.save_dir

        @property
        def checkpoint_dir(self) -> Path | None:
            """Where a `ModelCheckpoint` without `dirpath` saves with this logger."""
            save_dir = self.save_dir
            return (
                None if save_dir is None else Path(save_dir, self.name, self.version, "checkpoints")
            )

        @property
        @rank_zero_experiment
        def experiment(self) -> Run:
            self._run = attach(self._run)
            return self._run

        # --- what -------------------------------------------------------------------
        @rank_zero_only
        def log_hyperparams(
            self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any
        ) -> None:
            config = flat_config(params)
            if config:
                self.experiment.set_config(config)

        @rank_zero_only
        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
            values = scalars(metrics)
            if values:
                run = self.experiment
                run.log(values, step=step)
                if step is not None and step < self._flush_below:
                    run.flush()

        @rank_zero_only
        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            # ModelCheckpoint notifies right after writing `_last_checkpoint_saved`.
            path = getattr(checkpoint_callback, "_last_checkpoint_saved", None) or getattr(
                checkpoint_callback, "last_model_path", None
            )
            if not path:
                return
            step = getattr(checkpoint_callback, "_last_global_step_saved", None)
            info: dict[str, Any] = {}
            monitor = getattr(checkpoint_callback, "monitor", None)
            if monitor:
                info["monitor"] = monitor
                info["score"] = getattr(checkpoint_callback, "current_score", None)
                info["best"] = path == getattr(checkpoint_callback, "best_model_path", None)
            run = self.experiment
            run.flush()  # the metrics are never behind a checkpoint a later attempt resumes
            run.log_checkpoint(path, step=step, **info)
            if isinstance(step, int):
                self._flush_below = step

        @rank_zero_only
        def save(self) -> None:
            # Lightning calls this after every log_metrics: the run flushes every second
            # on its own, so there is nothing to do here that would not cost a write.
            pass

        @rank_zero_only
        def finalize(self, status: str) -> None:
            # The run stays open: trainer.test() may log after fit; it ends at exit.
            run = self.experiment
            if status == "failed" and not run.should_stop:  # should_stop: preempted
                run.mark_failed()
            run.flush()

    return XpLogger
