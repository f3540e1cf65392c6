"""Keras 3 (torch backend) XpCallback and Accelerate's XpTracker on tiny CPU models, under
`xp run` and through the queue."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, read_run, runs_of
from frameworks.conftest import metric_lines, steps_of

pytestmark = pytest.mark.integration


def test_keras_epochs_under_xp_run(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("keras_train.py")
    result = xp("run", "--", "python", "train.py", cwd=project, timeout=300)
    assert result.returncode == 0, result.output
    (run,) = runs_of(project / "runs")
    config = json.loads((run / "config.json").read_text())
    assert config["fit.epochs"] == 3 and config["fit.steps"] == 3
    assert config["optimizer.name"] == "sgd" and config["optimizer.learning_rate"] == pytest.approx(
        0.02
    )
    assert steps_of(run, "loss") == [0, 1, 2] == steps_of(run, "val_loss")
    assert [line["epoch"] for line in metric_lines(run)] == [0, 1, 2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_mae"] == metric_lines(run)[-1]["val_mae"]


def test_keras_every_2_batches_through_the_queue(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("keras_train.py")
    (name,) = xp(
        "submit", "--", "python", "train.py", "--log-freq", "2", cwd=project
    ).stdout.split()
    assert xp("worker", "--once", cwd=project, timeout=300).returncode == 0
    run = project / "runs" / name
    assert read_run(run)["status"] == "finished"
    # 3 batches an epoch: batches 2, 4, 6, 8 (global numbers), epoch ends at 3, 6, 9
    assert [line["step"] for line in metric_lines(run) if "val_loss" not in line] == [2, 4, 6, 8]
    assert steps_of(run, "val_loss") == [3, 6, 9]


def test_keras_bad_log_freq_is_a_clear_error(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("keras_train.py")
    result = xp("run", "--", "python", "train.py", "--log-freq", "weekly", cwd=project, timeout=300)
    assert result.returncode == 1
    (run,) = runs_of(project / "runs")
    log = (run / "output.log").read_text()
    assert 'XpCallback(log_freq=\'weekly\'): use "epoch", "batch", a number of batches' in log


def test_accelerate_tracker_under_xp_run(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("accelerate_train.py")
    result = xp("run", "--", "python", "train.py", cwd=project, timeout=300)
    assert result.returncode == 0, result.output
    (run,) = runs_of(project / "runs")
    assert json.loads((run / "config.json").read_text()) == {
        "lr": 0.05, "model.hidden": 8, "api_key": "***"
    }  # fmt: skip
    lines = metric_lines(run)
    assert [line["step"] for line in lines] == list(range(12))
    assert all("weights" not in line for line in lines)  # a tensor is not a scalar: left out
    assert json.loads((run / "summary.json").read_text())["loss"] == lines[-1]["loss"]
