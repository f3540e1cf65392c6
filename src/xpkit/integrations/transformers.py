"""`Trainer(..., callbacks=[XpCallback()])` for the Hugging Face Trainer.

`report_to="xpkit"` needs the name registered in transformers, whose table of reporting
integrations is closed: call `enable()` once before building `TrainingArguments`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from xpkit.errors import XpError
from xpkit.integrations._common import attach, flat_config, framework_missing, scalars

try:
    import transformers
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as e:
    raise framework_missing("transformers", "transformers", "transformers") from e

if TYPE_CHECKING:
    from xpkit.tracking import Run

REPORT_NAME = "xpkit"


class XpCallback(TrainerCallback):
    """Logs a Trainer into the current xpkit run, from the main process only.

    At train begin the model's config and then the TrainingArguments (which win on a
    shared name) go to the run's config; every log at `state.global_step`; every saved
    checkpoint (`<output_dir>/checkpoint-<step>`) into the run's record. When a
    resumable run is asked to stop (preemption), the Trainer saves a checkpoint and
    stops, and the next attempt resumes with `trainer.train(resume_from_checkpoint=True)`.
    """

    def __init__(self, run: Run | None = None) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        self._run = attach(self._run)
        return self._run

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        config = flat_config(getattr(model, "config", None) or {})
        config.update(flat_config(args))  # to_dict() already hides hub tokens
        self.run.set_config(config)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero and logs:
            values = scalars(logs)
            if values:
                self.run.log(values, step=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.run.should_stop:
            control.should_save = True  # the next attempt resumes from this checkpoint
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        info: dict[str, Any] = {}
        if state.best_model_checkpoint:
            info["best"] = os.path.abspath(state.best_model_checkpoint) == os.path.abspath(path)
            info["score"] = state.best_metric
        self.run.flush()  # the metrics are never behind a checkpoint a later attempt resumes
        self.run.log_checkpoint(path, step=state.global_step, **info)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        run = self.run
        run.summary["global_step"] = state.global_step
        if state.best_metric is not None:
            run.summary["best_metric"] = state.best_metric
        if state.best_model_checkpoint:
            run.summary["best_checkpoint"] = state.best_model_checkpoint
        run.flush()


def enable() -> None:
    """Make `TrainingArguments(report_to="xpkit")` add an `XpCallback` to the Trainer."""
    try:
        from transformers.integrations import integration_utils as table_module
    except ImportError:
        table_module = None  # type: ignore[assignment]
    registry = getattr(table_module, "INTEGRATION_TO_CALLBACK", None)
    if not isinstance(registry, dict) or not callable(
        getattr(table_module, "get_reporting_integration_callbacks", None)
    ):
        raise XpError(
            f"xpkit.integrations.transformers.enable(): transformers {transformers.__version__} "
            "has no INTEGRATION_TO_CALLBACK table to add report_to='xpkit' to; pass "
            "callbacks=[XpCallback()] to the Trainer instead"
        )
    registry[REPORT_NAME] = XpCallback
