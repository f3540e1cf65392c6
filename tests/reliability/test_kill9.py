"""kill -9 at random moments (seeded): of `xp run`, of the training process, of a worker."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, git, runs_of, wait_for
from reliability.conftest import iterations
from reliability.invariants import (
    DEFINED,
    json_files_whole,
    metric_steps,
    statuses,
    tools_still_work,
)

pytestmark = pytest.mark.integration

# Logs steps 0, 1, 2, ... forever; after each flush, records (atomically) the last step
# that reached metrics.jsonl: after any kill, at least that much must be there.
STEADY_PY = textwrap.dedent(
    """\
    import os, time
    import xpkit as xp
    run = xp.init()
    witness = os.path.join(os.environ["WITNESS_DIR"], os.environ["XP_RUN_NAME"])
    step = 0
    while True:
        for _ in range(50):
            run.log({"x": float(step)}, step=step)
            step += 1
        run.flush()
        with open(witness + ".tmp", "w") as f:
            f.write(str(step - 1))
        os.replace(witness + ".tmp", witness)
        time.sleep(0.01)
    """
)
FAST_LIVENESS = {"XP_HEARTBEAT_INTERVAL": "0.2", "XP_HEARTBEAT_TIMEOUT": "1"}


@pytest.fixture
def steady(git_project: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (git_project / "steady.py").write_text(STEADY_PY)
    (git_project / "experiments" / "toy" / "03_steady.xp.toml").write_text(
        'id = "steady"\nname = "steady"\ncommand = "python steady.py --i {i}"\n[grid]\ni = [0, 1]\n'
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-q", "-m", "steady")
    witness = tmp_path / "witness"
    witness.mkdir()
    return witness, {**os.environ, **FAST_LIVENESS, "WITNESS_DIR": str(witness)}


def check_after_kills(git_project: Path, witness: Path, xp: Callable[..., Result],
                      env: dict[str, str]) -> dict[str, str]:  # fmt: skip
    """Every run in a defined status and not `running` (its runner is dead), every
    flushed metric line still there, no JSON half-written, ls and report fine."""
    time.sleep(2.5)  # beyond the heartbeat timeout: dead runners' runs read as lost
    found = statuses(xp, git_project, env)
    assert set(found.values()) <= DEFINED - {"running"}, found
    for run in runs_of(git_project / "runs"):
        steps = metric_steps(run)
        assert steps == list(range(len(steps))), f"{run.name}: gap or duplicate in steps"
        mark = witness / run.name
        if mark.exists():
            assert len(steps) > int(mark.read_text()), f"{run.name}: flushed metrics lost"
    json_files_whole(git_project / "runs")
    tools_still_work(xp, git_project, env)
    return found


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*XP, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip


def test_kill9_of_xp_run_at_random_moments(
    git_project: Path, steady: tuple[Path, dict[str, str]], xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 of `xp run` at a random moment (0-1.5 s after start, seeded; 4 times,
    soak: 100).
    Promise: its runs end `lost` at worst, every flushed metric line survives, no JSON file
    is half-written, `xp ls`/`xp report` still work."""
    witness, env = steady
    rng = random.Random(1234)
    for _ in range(iterations(4, 100)):
        proc = _start(["run", "experiments/toy/03_steady.xp.toml"], git_project, env)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    found = check_after_kills(git_project, witness, xp, env)
    assert "lost" in found.values()


def test_kill9_of_the_training_process(
    git_project: Path, steady: tuple[Path, dict[str, str]], xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 of the training process at a random moment (seeded; 3 times, soak: 100).
    Promise: the run is recorded failed ("killed by signal SIGKILL"), every metric line
    flushed before survives."""
    witness, env = steady
    rng = random.Random(99)
    for _ in range(iterations(3, 100)):
        before = {r.name for r in runs_of(git_project / "runs")}
        proc = _start(["run", "--", "python", "steady.py"], git_project, env)
        wait_for(lambda b=before: any(r.name not in b for r in runs_of(git_project / "runs")))
        run = next(r for r in runs_of(git_project / "runs") if r.name not in before)
        wait_for(lambda r=run: json.loads((r / "run.json").read_text()).get("pid") is not None)
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(json.loads((run / "run.json").read_text())["pid"], signal.SIGKILL)
        assert proc.wait(60) == 1
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "failed" and info["reason"] == "killed by signal SIGKILL"
    check_after_kills(git_project, witness, xp, env)


def test_kill9_of_a_worker_while_it_runs_jobs(
    git_project: Path, steady: tuple[Path, dict[str, str]], xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 of `xp worker` while it runs jobs, at a random moment (seeded; 2 times,
    soak: 100).
    Promise: its runs end `lost` (never stuck `running`), the rest stay queued for the
    next worker, flushed metrics survive."""
    witness, env = steady
    rng = random.Random(7)
    for _ in range(iterations(2, 100)):
        submitted = xp("submit", "experiments/toy/03_steady.xp.toml", "--gpus", "0",
                       cwd=git_project, env=env)  # fmt: skip
        assert submitted.returncode == 0, submitted.output
        worker = _start(["worker", "--max-jobs", "2"], git_project, env)
        time.sleep(rng.uniform(0.3, 2.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    found = check_after_kills(git_project, witness, xp, env)
    assert set(found.values()) <= {"lost", "queued"}, found


# Logs N points as fast as it can, or one every `gap` seconds, noting (atomically) how
# many it logged so far; after `after` seconds, or after the last point, it kills itself
# with SIGKILL: nothing of xp's gets to run after the last log() call.
BURST_PY = textwrap.dedent(
    """\
    import os, random, signal, sys, time
    import xpkit as xp
    count, gap, after = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    run = xp.init()
    started = time.monotonic()
    for step in range(count):
        run.log({"loss": random.random()}, step=step)
        if gap:
            time.sleep(gap)
            if time.monotonic() - started > after:
                break
    print("LOGGED", step + 1, time.time(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize(("count", "gap"), [(10_000, 0.0), (100_000, 0.0), (5_000, 0.001)],
                         ids=["burst-10k", "burst-100k", "steady-1k-per-s"])  # fmt: skip
def test_kill9_right_after_logging_loses_at_most_a_quarter_second_or_64_kib(
    git_project: Path, xp: Callable[..., Result], count: int, gap: float
) -> None:
    """Fault: the training process kills itself with SIGKILL right after logging (a burst
    of 10,000 or 100,000 points, or 1,000 points/s for a random 0.5-2 s; seeded).
    Promise: metrics.jsonl keeps every point but at most the last 64 KiB of lines or the
    last 0.25 s of logging (plus one flush's write time), whichever is less; no torn line."""
    (git_project / "burst.py").write_text(BURST_PY)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "burst")
    after = random.Random(count).uniform(0.5, 2.0)
    result = xp("run", "--", "python", "burst.py", str(count), str(gap), str(after),
                cwd=git_project)  # fmt: skip
    (run,) = runs_of(git_project / "runs")
    logged = int(result.output.split("LOGGED ")[1].split()[0])
    text = (run / "metrics.jsonl").read_text()
    assert text.endswith("\n") or not text
    steps = [json.loads(line)["step"] for line in text.splitlines()]
    assert steps == list(range(len(steps)))
    lost = logged - len(steps)
    shortest = min((len(line) + 1 for line in text.splitlines()), default=40)
    if gap:  # at most 0.25 s of points (1 per ms) and a little slack for the write itself
        assert lost <= 0.3 / gap, (logged, len(steps))
    else:  # every lost line is at least as long as the shortest written one
        assert lost * shortest <= 64 * 1024, (logged, len(steps))
