"""The Hugging Face Trainer's XpCallback (and report_to="xpkit") on a 2-layer BERT built
from its config, under `xp run` and killed-then-resumed through the queue."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, read_run, runs_of
from frameworks.conftest import checkpoints_of, steps_of

pytestmark = pytest.mark.integration


def test_xp_run_records_args_model_config_metrics_checkpoints(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("hf_train.py")
    result = xp("run", "--", "python", "train.py", cwd=project, timeout=300)
    assert result.returncode == 0, result.output
    (run,) = runs_of(project / "runs")
    config = json.loads((run / "config.json").read_text())
    assert config["learning_rate"] == 0.001 and config["max_steps"] == 20  # TrainingArguments
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 16  # model config
    assert config["pad_token_id"] == 0  # a token id is not a secret...
    assert config["hub_token"] == "***"  # ...a token is
    assert "hf_abcdefghij" not in (run / "config.json").read_text()
    assert steps_of(run, "loss") == [5, 10, 15, 20]
    assert steps_of(run, "eval_loss") == [10, 20]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 20 and "train_runtime" in summary
    assert [(c["path"], c["step"]) for c in checkpoints_of(run)] == [
        ("hf/checkpoint-10", 10), ("hf/checkpoint-20", 20)
    ]  # fmt: skip
    assert (run / "hf" / "checkpoint-20" / "trainer_state.json").is_file()


def test_killed_trainer_resumes_into_the_same_history(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    """Through the queue, hooked with report_to="xpkit" (enable()): attempt 1 dies by
    SIGKILL at step 15, attempt 2 resumes from checkpoint-10 with resume_from_checkpoint."""
    project = framework_project("hf_train.py")
    submitted = xp("submit", "--resumable", "--", "python", "train.py", "--die-at", "15",
                   "--report-to", "xpkit", cwd=project)  # fmt: skip
    (name,) = submitted.stdout.split()
    run = project / "runs" / name
    assert xp("worker", "--once", cwd=project, timeout=300).returncode == 0
    assert read_run(run)["status"] == "failed"
    assert xp("requeue", name, cwd=project).returncode == 0
    assert xp("worker", "--once", cwd=project, timeout=300).returncode == 0
    info = read_run(run)
    assert info["status"] == "finished" and info["attempt"] == 2
    assert steps_of(run, "loss") == [5, 10, 15, 20]
    assert steps_of(run, "eval_loss") == [10, 20]
    checkpoints = [(c["path"], c["attempt"]) for c in checkpoints_of(run)]
    assert checkpoints == [("checkpoints/checkpoint-10", 1), ("checkpoints/checkpoint-20", 2)]


def test_enable_on_a_transformers_without_the_registry_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from transformers.integrations import integration_utils

    from xpkit.errors import XpError
    from xpkit.integrations import transformers as xp_hf

    monkeypatch.delattr(integration_utils, "INTEGRATION_TO_CALLBACK")
    with pytest.raises(
        XpError, match=r"has no INTEGRATION_TO_CALLBACK .* callbacks=\[XpCallback\(\)\]"
    ):
        xp_hf.enable()
