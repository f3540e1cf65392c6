"""Zero changed lines: what Lightning's CSVLogger, the HF Trainer and Keras's CSVLogger
write on their own becomes the run's metrics (`metrics_from`), only what this run wrote."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, git, runs_of
from frameworks.conftest import metric_lines, steps_of

pytestmark = pytest.mark.integration


def experiment(project: Path, body: str) -> str:
    path = project / "exp.xp.toml"
    path.write_text(textwrap.dedent(body))
    git(project, "add", "-A")
    git(project, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "exp")
    return "exp.xp.toml"


def test_lightning_csv_logger(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("lightning_train.py")
    exp = experiment(project, """\
        id = "lcsv01"
        command = "python train.py --steps 20 --logger csv"
        metrics_from = ["lightning-csv"]
        """)  # fmt: skip
    for _ in range(2):  # the second run finds the first's metrics.csv in the worktree
        result = xp("run", exp, cwd=project, timeout=300)
        assert result.returncode == 0, result.output
    for run in runs_of(project / "runs"):
        assert steps_of(run, "train/loss") == list(range(20))
        assert steps_of(run, "val/loss") == [9, 19]
        summary = json.loads((run / "summary.json").read_text())
        assert (
            summary["val/loss"] == [m for m in metric_lines(run) if "val/loss" in m][-1]["val/loss"]
        )


def test_hf_trainer_state(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("hf_train.py")
    exp = experiment(project, """\
        id = "hfst01"
        command = "python train.py --report-to none"
        metrics_from = ["hf-trainer-state"]
        """)  # fmt: skip
    result = xp("run", exp, cwd=project, timeout=300)
    assert result.returncode == 0, result.output
    (run,) = runs_of(project / "runs")
    # checkpoint-10 and checkpoint-20 both hold the history: each entry counts once
    assert steps_of(run, "loss") == [5, 10, 15, 20]
    assert steps_of(run, "eval_loss") == [10, 20]
    assert steps_of(run, "train_runtime") == []  # only in the final state, never saved here


def test_keras_csv_logger(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("keras_train.py")
    exp = experiment(project, """\
        id = "kcsv01"
        command = "python train.py --csv training.log --epochs 4"
        metrics_from = ["keras-csv"]
        """)  # fmt: skip
    result = xp("run", exp, cwd=project, timeout=300)
    assert result.returncode == 0, result.output
    (run,) = runs_of(project / "runs")
    lines = metric_lines(run)
    assert [line["step"] for line in lines] == [0, 1, 2, 3]  # step = epoch
    assert set(lines[0]) == {"step", "time", "loss", "mae", "val_loss", "val_mae"}


APPENDER = """\
import os, sys, time
rows = [line for line in sys.argv[1:]]
with open("history.csv", "a") as f:
    for row in rows:
        f.write(row + "\\n")
        f.flush()
with open("metrics.csv", "w") as f:  # rewritten whole with a new column, as CSVLogger does
    f.write("epoch,step,loss\\n0,0,1.0\\n0,1,0.5\\n")
time.sleep(1.2)
with open("metrics.csv", "w") as f:
    f.write("epoch,step,loss,val\\n0,0,1.0,\\n0,1,0.5,\\n0,1,,0.7\\n")
"""


def test_a_file_from_before_the_run_gives_only_its_new_rows(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    project = framework_project("keras_train.py")
    (project / "append.py").write_text(APPENDER)
    exp = experiment(project, """\
        id = "appd01"
        command = "python append.py 2,0.2 3,0.1"
        metrics_from = ["keras-csv", "lightning-csv"]
        """)  # fmt: skip
    (project / "history.csv").write_text("epoch,loss\n0,0.9\n1,0.5\n")  # another run's rows
    env = {"XP_HEARTBEAT_INTERVAL": "0.3"}
    result = xp("run", exp, "--no-git", cwd=project, env=env, timeout=120)
    assert result.returncode == 0, result.output
    (run,) = runs_of(project / "runs")
    points = [{k: v for k, v in line.items() if k != "time"} for line in metric_lines(run)]
    assert sorted(points, key=lambda p: (p["step"], sorted(p))) == [
        {"step": 0, "epoch": 0.0, "loss": 1.0}, {"step": 1, "epoch": 0.0, "loss": 0.5},
        {"step": 1, "epoch": 0.0, "val": 0.7}, {"step": 2, "loss": 0.2}, {"step": 3, "loss": 0.1},
    ]  # fmt: skip
