"""`xp requeue` is idempotent: once per attempt of a run, from any number of callers,
`--requeue-lost` included; a resumable run comes back as its own next attempt."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, read_run, runs_of

pytestmark = pytest.mark.integration
FAIL = ["--", "python", "-c", "import sys; sys.exit(3)"]


def failed_run(xp: Callable[..., Result], project: Path, *extra: str) -> str:
    result = xp("run", *extra, *FAIL, cwd=project)
    assert result.returncode == 1, result.output
    (run,) = [r for r in runs_of(project / "runs") if read_run(r)["status"] == "failed"
              and not read_run(r).get("requeued_as") and not read_run(r).get("rerun_of")][-1:]  # fmt: skip
    return run.name


def copies_of(runs_root: Path, name: str) -> list[str]:
    return [r.name for r in runs_of(runs_root) if read_run(r).get("rerun_of") == name]


def test_three_requeues_in_a_row_give_one_copy(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    name = failed_run(xp, git_project)
    first = xp("requeue", name, cwd=git_project)
    assert first.returncode == 0, first.output
    copy = first.stdout.strip()
    for _ in range(2):
        again = xp("requeue", name, cwd=git_project)
        assert again.returncode == 2 and f"already requeued as {copy}" in again.stderr
        assert "Traceback" not in again.output
    assert copies_of(git_project / "runs", name) == [copy]
    assert read_run(git_project / "runs" / name)["requeued_as"] == copy
    assert read_run(git_project / "runs" / copy)["status"] == "queued"


def test_five_requeues_at_once_give_one_copy(git_project: Path, xp: Callable[..., Result]) -> None:
    """Fault: five `xp requeue` of one failed run at once.
    Promise: exactly one copy, one success and four clear refusals, no staged leftovers."""
    name = failed_run(xp, git_project)
    procs = [subprocess.Popen([*XP, "requeue", name], cwd=git_project, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(5)]  # fmt: skip
    outcomes = [(p.wait(60), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in outcomes) == [0, 2, 2, 2, 2], outcomes
    (copy,) = copies_of(git_project / "runs", name)
    assert [out.strip() for code, out, _ in outcomes if code == 0] == [copy]
    assert all(f"already requeued as {copy}" in err for code, _, err in outcomes if code == 2)
    assert not list((git_project / "runs" / ".xp" / "staging").iterdir())  # losers cleaned up


def test_user_requeue_and_requeue_lost_requeue_once(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    fast = {"XP_HEARTBEAT_INTERVAL": "0.3", "XP_HEARTBEAT_TIMEOUT": "1"}
    (name,) = xp("submit", "--", "python", "-c", "pass", cwd=git_project).stdout.split()
    run = git_project / "runs" / name
    info = read_run(run)  # a run its worker lost: running, held by a process that is gone
    info.update(status="running", started=1.0, worker="elsewhere:1")
    (run / "run.json").write_text(json.dumps(info))
    (run / ".claim").write_text('{"kind": "worker", "host": "gone-host", "pid": 1, "time": 0}\n')
    (git_project / "runs" / ".xp" / "queue" / name).unlink()
    requeued = xp("requeue", name, cwd=git_project, env=fast)
    assert requeued.returncode == 0, requeued.output
    worker = xp("worker", "--once", "--requeue-lost", cwd=git_project, env=fast, timeout=120)
    assert worker.returncode == 0, worker.output
    (copy,) = copies_of(git_project / "runs", name)
    assert (
        copy == requeued.stdout.strip()
        and read_run(git_project / "runs" / copy)["status"] == "finished"
    )
    assert read_run(run)["status"] == "lost"


def test_resumable_requeue_is_the_next_attempt_once(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    (name,) = xp("submit", "--resumable", *FAIL, cwd=git_project).stdout.split()
    assert xp("worker", "--once", cwd=git_project).returncode == 0
    assert read_run(git_project / "runs" / name)["status"] == "failed"
    again = xp("requeue", name, cwd=git_project)
    assert again.returncode == 0 and again.stdout.strip() == name
    info = read_run(git_project / "runs" / name)
    assert info["status"] == "queued" and info["attempt"] == 2 and len(info["attempts"]) == 1
    twice = xp("requeue", name, cwd=git_project)
    assert twice.returncode == 2 and "is queued" in twice.stderr
    assert len(runs_of(git_project / "runs")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cancel", "--requeue", "{run}"], "is not resumable"),
        (["requeue", "nosuch"], "no run matches 'nosuch'"),
        (["worker", "--max-jobs", "0"], "--max-jobs must be 1 or more"),
        (["worker", "--ray", "127.0.0.2:1", "--gpus", "0"], "--gpus and --max-jobs are for a local"),
        (["cluster", "head", "--node-ip", "127.0.0.1"], "Ray silently replaces this address"),
        (["cluster", "join", "127.0.0.2:6379", "--node-ip", "localhost"], "pass another loopback"),
    ],
    ids=["cancel-requeue-not-resumable", "requeue-unknown", "max-jobs-0", "ray-with-gpus",
         "head-127.0.0.1", "join-localhost"],
)  # fmt: skip
def test_bad_queue_input_is_a_clear_error(
    git_project: Path, xp: Callable[..., Result], args: list[str], message: str
) -> None:
    """Fault: a bad queue command line (the case in brackets).
    Promise: exit 2 with a message that says what is valid, no traceback, nothing changed."""
    (name,) = xp("submit", "--", "python", "-c", "pass", cwd=git_project).stdout.split()
    result = xp(*[a.replace("{run}", name) for a in args], cwd=git_project, timeout=60)
    assert result.returncode == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert read_run(git_project / "runs" / name)["status"] == "queued"  # nothing changed
