"""kill -9 of every queue process at seeded random moments; gc while workers run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, git, read_run, runs_of
from reliability.conftest import iterations
from reliability.invariants import DEFINED, json_files_whole, statuses, tools_still_work

pytestmark = pytest.mark.integration

# Appends a line to its witness file when it starts and when it ends: a run that
# executed twice has two "start" lines.
JOB = textwrap.dedent(
    """\
    import os, sys, time
    witness = os.path.join(open("witness.txt").read().strip(), os.environ["XP_RUN_NAME"])
    with open(witness, "a") as f:
        f.write("start\\n")
    time.sleep(float(sys.argv[1]))
    with open(witness, "a") as f:
        f.write("end\\n")
    """
)
FAST = {"XP_HEARTBEAT_INTERVAL": "0.2", "XP_HEARTBEAT_TIMEOUT": "1", "XP_KILL_GRACE": "1",
        "XP_WORKER_POLL": "0.1"}  # fmt: skip


@pytest.fixture
def queue_project(git_project: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    witness = tmp_path / "witness"
    witness.mkdir()
    (git_project / "job.py").write_text(JOB)
    (git_project / "witness.txt").write_text(f"{witness}\n")
    (git_project / "experiments" / "toy" / "04_jobs.xp.toml").write_text(
        'id = "jobs01"\ncommand = "python job.py {seconds}"\n'
        "[grid]\nseconds = [0.3, 0.6]\ni = [0, 1]\n"
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "jobs")
    return git_project, witness, {**os.environ, **FAST}


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*XP, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def _kill_after(proc: subprocess.Popen[bytes], seconds: float) -> None:
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _some_run(runs_root: Path, rng: random.Random, wanted: tuple[str, ...]) -> str | None:
    names = [r.name for r in runs_of(runs_root) if read_run(r).get("status") in wanted]
    return rng.choice(names) if names else None


def test_kill9_of_any_queue_process_leaves_nothing_stuck(
    queue_project: tuple[Path, Path, dict[str, str]], xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 at a random moment (seeded) of `xp submit`, `xp worker` (while it runs
    jobs), `xp run`, `xp requeue`, `xp cancel` and `xp gc --snapshots`, each once per round
    while a worker runs (3 rounds, soak: 30).
    Promise: a fresh `xp worker --once --requeue-lost` drains the queue: no run stays
    queued or running, none executed twice, no JSON half-written, ls/report/queue work."""
    project, witness, env = queue_project
    runs_root = project / "runs"
    rng = random.Random(2024)
    for _ in range(iterations(3, 30)):
        worker = _start(["worker", "--max-jobs", "2"], project, env)
        _kill_after(_start(["submit", "experiments/toy/04_jobs.xp.toml"], project, env),
                    rng.uniform(0.0, 1.2))  # fmt: skip
        _kill_after(_start(["run", "--", "python", "job.py", "0.5"], project, env),
                    rng.uniform(0.0, 1.5))  # fmt: skip
        ended = _some_run(runs_root, rng, ("failed", "killed", "cancelled"))
        if ended:
            _kill_after(_start(["requeue", ended], project, env), rng.uniform(0.0, 0.8))
        queued = _some_run(runs_root, rng, ("queued", "running"))
        if queued:
            _kill_after(_start(["cancel", queued], project, env), rng.uniform(0.0, 0.6))
        _kill_after(_start(["gc", "--snapshots"], project, env), rng.uniform(0.0, 0.8))
        _kill_after(worker, rng.uniform(0.0, 1.5))
    drain = xp("worker", "--once", "--requeue-lost", cwd=project, env=FAST, timeout=300)
    assert drain.returncode == 0 and "Traceback" not in drain.output, drain.output
    time.sleep(1.5)  # beyond the heartbeat timeout
    found = statuses(xp, project, FAST)
    assert found and set(found.values()) <= DEFINED - {"queued", "running"}, found
    for path in witness.iterdir():
        assert path.read_text().count("start") == 1, f"{path.name} executed twice"
    for name, status in found.items():
        if status == "finished":
            assert (witness / name).read_text() == "start\nend\n", name
    json_files_whole(runs_root)
    tools_still_work(xp, project, FAST)


DATA_FILES = 1000
COUNT = textwrap.dedent(
    f"""\
    import hashlib, os, time
    time.sleep(0.5)  # while gc runs
    names = sorted(os.listdir("data"))
    digest = hashlib.sha1(b"".join(open(os.path.join("data", n), "rb").read() for n in names))
    print(f"files={{len(names)}} digest={{digest.hexdigest()}}", flush=True)
    assert len(names) == {DATA_FILES}
    """
)


def test_gc_while_workers_run_changes_no_code_a_run_sees(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """Fault: `xp gc` and `xp gc --snapshots` in a loop while two workers check out and run
    six runs of three snapshots (1,000 files each) and submits of new snapshots go on.
    Promise: every run sees all its files, exactly as submitted; the snapshot commit of
    every run, queued ones included, survives `git gc --prune=now`."""
    data = git_project / "data"
    data.mkdir()
    for i in range(DATA_FILES):
        (data / f"{i:04d}.txt").write_text(f"{i}\n")
    (git_project / "count.py").write_text(COUNT)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "data")
    digests = {}
    names = []
    for version in range(3):  # three snapshots: the worktrees get recycled
        (data / "0000.txt").write_text(f"version {version}\n")
        for _ in range(2):
            (name,) = xp("submit", "--", "python", "count.py", cwd=git_project).stdout.split()
            names.append(name)
            digests[name] = version
    env = {**os.environ, **FAST}
    workers = [_start(["worker", "--once", "--max-jobs", "1"], git_project, env) for _ in range(2)]
    late: list[str] = []

    def submit_more() -> None:  # snapshots taken while gc --snapshots runs
        for version in range(3, 6):
            (data / "0001.txt").write_text(f"late {version}\n")
            late.extend(xp("submit", "--gpus", "0", "--label", "later", "--", "python",
                           "count.py", cwd=git_project).stdout.split())  # fmt: skip

    submitter = threading.Thread(target=submit_more)
    submitter.start()
    while any(w.poll() is None for w in workers) or submitter.is_alive():
        for args in (["gc"], ["gc", "--snapshots"]):
            assert xp(*args, cwd=git_project, env=env).returncode == 0
    submitter.join()
    assert len(late) == 3
    outputs = {}
    for name in names:
        info = read_run(git_project / "runs" / name)
        assert info["status"] == "finished", (name, info.get("reason"))
        outputs[name] = (git_project / "runs" / name / "output.log").read_text()
        assert f"files={DATA_FILES}" in outputs[name]
    for a in names:
        for b in names:
            same = digests[a] == digests[b]
            assert (outputs[a].split("digest=")[1] == outputs[b].split("digest=")[1]) == same
    # The refs of runs that exist are kept, so their commits survive git's own gc.
    git(git_project, "gc", "-q", "--prune=now")
    for name in names + late:
        sha = json.loads((git_project / "runs" / name / "run.json").read_text())["snapshot"]
        git(git_project, "cat-file", "-e", f"{sha}^{{commit}}")
