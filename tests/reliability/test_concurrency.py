"""Many processes at once on one runs root."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, git, runs_of
from reliability.conftest import iterations
from reliability.invariants import json_files_whole, statuses

pytestmark = pytest.mark.integration


def test_concurrent_xp_run_never_share_a_trial(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """Fault: 50 `xp run` of one command started at the same moment (soak: 100).
    Promise: as many runs, trial numbers 1..N each once, every run finished."""
    count = iterations(50, 100)
    procs = [
        subprocess.Popen([*XP, "run", "--", "true"], cwd=git_project,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(count)
    ]  # fmt: skip
    errors = [p.stderr.read() for p in procs if p.wait(180) != 0 and p.stderr]
    assert not errors, errors[:3]
    runs = [json.loads((r / "run.json").read_text()) for r in runs_of(git_project / "runs")]
    assert len(runs) == count
    assert {r["experiment_id"] for r in runs} == {runs[0]["experiment_id"]}
    assert sorted(r["trial"] for r in runs) == list(range(1, count + 1))
    assert all(r["status"] == "finished" for r in runs)
    json_files_whole(git_project / "runs")


RECORD_PY = textwrap.dedent(
    """\
    import os, time
    with open(os.environ["TAKEN_LOG"], "a") as f:  # O_APPEND: one whole line per write
        f.write(os.environ["XP_RUN_NAME"] + "\\n")
    time.sleep(0.05)
    """
)


def test_four_workers_take_each_queued_run_exactly_once(
    git_project: Path, xp: Callable[..., Result], tmp_path: Path
) -> None:
    """Fault: 4 workers claiming from one queue of 40 runs at the same time (soak: 200).
    Promise: every run executed exactly once; none lost, none taken twice."""
    (git_project / "record.py").write_text(RECORD_PY)
    (git_project / "experiments" / "toy" / "02_many.xp.toml").write_text(
        'id = "many40"\nname = "many"\ncommand = "python record.py --i {i}"\n'
        f"[grid]\ni = {list(range(iterations(40, 200)))}\n"
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-q", "-m", "many")
    submitted = xp("submit", "experiments/toy/02_many.xp.toml", "--gpus", "0", cwd=git_project)
    assert submitted.returncode == 0, submitted.output
    queued = {r.name for r in runs_of(git_project / "runs")}
    taken_log = tmp_path / "taken.log"
    env = {**os.environ, "XP_WORKER_POLL": "0.05", "TAKEN_LOG": str(taken_log)}
    workers = [
        subprocess.Popen([*XP, "worker", "--once", "--max-jobs", "2"], cwd=git_project, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(4)
    ]  # fmt: skip
    for worker in workers:
        assert worker.wait(300) == 0, worker.stderr.read() if worker.stderr else ""
    done = statuses(xp, git_project, {})
    assert set(done) == queued
    assert set(done.values()) == {"finished"}, Counter(done.values())
    taken = Counter(taken_log.read_text().split())
    assert set(taken) == queued and set(taken.values()) == {1}, taken.most_common(3)
    json_files_whole(git_project / "runs")
