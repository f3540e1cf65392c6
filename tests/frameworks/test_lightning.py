"""Lightning's XpLogger (both packages) on a tiny CPU model under `xp run`, through the
queue, and killed with SIGKILL then resumed into the same run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, read_run, runs_of
from frameworks.conftest import checkpoints_of, metric_lines, steps_of

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("package", ["lightning", "pytorch_lightning"])
def test_xp_run_records_hyperparams_metrics_checkpoints(
    framework_project: Callable[[str], Path], xp: Callable[..., Result], package: str
) -> None:
    project = framework_project("lightning_train.py")
    result = xp("run", "--", "python", "train.py", "--steps", "30", "--hidden", "6",
                cwd=project, env={"LIGHTNING_PACKAGE": package}, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.output
    (run,) = runs_of(project / "runs")
    assert read_run(run)["status"] == "finished"
    config = json.loads((run / "config.json").read_text())
    assert config == {"hidden": 6, "lr": 0.05, "optimizer.name": "sgd", "optimizer.momentum": 0.0}
    assert steps_of(run, "train/loss") == list(range(30))  # every logged step, once
    assert steps_of(run, "val/loss") == [9, 19, 29]
    summary = json.loads((run / "summary.json").read_text())
    last = [m for m in metric_lines(run) if "val/loss" in m][-1]
    assert summary["val/loss"] == last["val/loss"]
    saved = [c for c in checkpoints_of(run) if "last" not in c["path"]]
    assert [c["step"] for c in saved] == [10, 20, 30]
    info = read_run(run)
    for entry in saved:  # inside the run, under <experiment id>/<run id>/checkpoints
        assert entry["path"].startswith(f"{info['experiment_id']}/{info['id']}/checkpoints/")
    assert (run / saved[-1]["path"]).is_file()  # ModelCheckpoint keeps the latest only
    shown = xp("show", run.name, cwd=project).stdout
    assert "checkpoints (6)" in shown
    assert f"{saved[-1]['path']}\n" in shown and f"{saved[0]['path']} (removed)" in shown


def test_killed_run_resumes_into_the_same_history(
    framework_project: Callable[[str], Path], xp: Callable[..., Result]
) -> None:
    """Attempt 1 dies by SIGKILL at step 25 (last checkpoint at 20); `xp requeue` makes
    attempt 2, which resumes from `last.ckpt`: every step once, in order, history kept."""
    project = framework_project("lightning_train.py")
    submitted = xp("submit", "--resumable", "--", "python", "train.py", "--steps", "40",
                   "--die-at", "25", cwd=project)  # fmt: skip
    assert submitted.returncode == 0, submitted.output
    (name,) = submitted.stdout.split()
    run = project / "runs" / name
    first = xp("worker", "--once", cwd=project, timeout=300)
    assert first.returncode == 0, first.output
    assert read_run(run)["status"] == "failed"
    # Written with the checkpoint at global step 20: everything it holds (steps 0-19).
    assert max(steps_of(run, "train/loss")) >= 19
    assert xp("requeue", name, cwd=project).stdout.strip() == name
    second = xp("worker", "--once", cwd=project, timeout=300)
    assert second.returncode == 0, second.output
    info = read_run(run)
    assert info["status"] == "finished" and info["attempt"] == 2
    assert steps_of(run, "train/loss") == list(range(40))
    assert steps_of(run, "val/loss") == [9, 19, 29, 39]
    by_attempt = {c["step"]: c["attempt"] for c in checkpoints_of(run) if "last" not in c["path"]}
    assert by_attempt == {10: 1, 20: 1, 30: 2, 40: 2}
    assert len(runs_of(project / "runs")) == 1
    assert "Restored all states from the checkpoint" in (run / "output.log").read_text()
