"""The scheduler's promises, tested against every backend: the local one (fake GPUs)
and a real two-node Ray cluster on loopback (127.0.0.2 / 127.0.0.3, 2 fake GPUs each).

Drain, backfill, cancel during start-up, a worker or node killed mid-run, and a
resumable run preempted three ways that ends as one run with four attempts."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import XP, FakeGpus, Result, git, read_run, runs_of, wait_for
from reliability.conftest import iterations
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration  # runs in one xdist worker: see conftest.py
HEAD, NODE = "127.0.0.2", "127.0.0.3"

SLEEPER = textwrap.dedent(
    """\
    import os, sys, time
    witness = os.path.join(open("witness.txt").read().strip(), os.environ["XP_RUN_NAME"])
    open(witness + ".started", "a").write("x")
    time.sleep(float(sys.argv[1]))
    open(witness + ".ended", "a").write("x")
    """
)

# Trains 60 steps; resumes from its checkpoint; saves one after every step (metrics
# flushed first, so they are never behind it). Stops cleanly when asked to. In its
# third attempt it asks to be requeued (exit 75) at step 40.
RESUMABLE = textwrap.dedent(
    """\
    import json, os, sys, time
    import xpkit as xp
    run = xp.init()
    ckpt = os.path.join(run.checkpoint_dir, "state.json")
    start = json.load(open(ckpt))["step"] + 1 if os.path.exists(ckpt) else 0
    print(f"attempt {run.attempt} resumed={run.resumed} from step {start}", flush=True)
    with open(os.path.join(open("witness.txt").read().strip(), "resumed-from"), "a") as f:
        f.write(f"{run.attempt}:{start}\\n")
    for step in range(start, 60):
        if run.should_stop:
            print(f"stopping at step {step}", flush=True)
            sys.exit(0)
        if run.attempt == 3 and step == 40:
            sys.exit(75)
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        run.flush()
        with open(ckpt + ".tmp", "w") as f:
            json.dump({"step": step}, f)
        os.replace(ckpt + ".tmp", ckpt)
        time.sleep(0.1)
    """
)


@dataclass
class Backend:
    """How a test starts workers of one backend (for Ray: the cluster's cache too)."""

    name: str
    args: list[str]
    env: dict[str, str]
    cache: Path | None = None
    address: str = ""
    temp: Path | None = None


def _start_cluster(cache: Path, temp: Path) -> tuple[str, str]:
    import socket

    with socket.socket() as s:
        s.bind((HEAD, 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XP_CACHE_DIR": str(cache), "XP_GPU_PROBE": "none"}
    common = ["--num-gpus", "2", "--num-cpus", "3", "--temp-dir", str(temp)]
    head = subprocess.run([*XP, "cluster", "head", "--node-ip", HEAD, "--port", str(port), *common],
                          env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert head.returncode == 0, head.stdout + head.stderr
    address = f"{HEAD}:{port}"
    joined = subprocess.run([*XP, "cluster", "join", address, "--node-ip", NODE, "--label", "n2",
                             *common],
                            env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert joined.returncode == 0, joined.stdout + joined.stderr
    return address, (cache / "ray" / "auth_token").read_text().strip()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, str, Path, Path]]:
    pytest.importorskip("ray")
    cache = Path(tempfile.mkdtemp(prefix="xpsched-cache"))
    temp = Path(tempfile.mkdtemp(prefix="xprs", dir="/tmp"))
    env = {**os.environ, "XP_CACHE_DIR": str(cache)}
    try:
        address, token = _start_cluster(cache, temp)
        yield address, token, cache, temp
    finally:
        subprocess.run([*XP, "cluster", "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


def _ray_node_pids(cache: Path, ip: str) -> list[int]:
    folder = cache / "ray" / "nodes"
    pids: list[int] = []
    for path in folder.glob("*.json"):
        node = json.loads(path.read_text())
        if node["node_ip"] == ip:
            pids += node["pids"]
    return pids


@pytest.fixture(params=["local", "ray"])
def backend(request: pytest.FixtureRequest, gpu_file: FakeGpus) -> Backend:
    gpu_file.set([{"name": "A"}, {"name": "B"}, {"name": "C"}, {"name": "D"}])
    if request.param == "local":
        return Backend("local", [], {})
    address, token, cache, temp = request.getfixturevalue("ray_cluster")
    return Backend("ray", ["--ray", address, "--node-ip", HEAD], {"XP_RAY_TOKEN": token},
                   cache, address, temp)  # fmt: skip


@pytest.fixture
def project(git_project: Path, tmp_path: Path) -> tuple[Path, Path]:
    (git_project / "sleeper.py").write_text(SLEEPER)
    (git_project / "resumable.py").write_text(RESUMABLE)
    witness = tmp_path / "witness"  # where the programs say what they did (Ray tasks too)
    witness.mkdir()
    (git_project / "witness.txt").write_text(f"{witness}\n")
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "scheduler tests")
    return git_project, witness


class Workers:
    def __init__(self, backend: Backend, cwd: Path, witness: Path) -> None:
        self.backend, self.cwd = backend, cwd
        self.env = {**os.environ, **backend.env, "XP_HEARTBEAT_INTERVAL": "0.3", "XP_HEARTBEAT_TIMEOUT": "3",
                    "XP_KILL_GRACE": "5"}  # fmt: skip
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*XP, "worker", *self.backend.args, *args], cwd=self.cwd,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip
        self.started.append(proc)
        return proc

    def xp(self, *args: str) -> Result:
        proc = subprocess.run([*XP, *args], cwd=self.cwd, env=self.env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def submit(self, *args: str) -> list[str]:
        result = self.xp("submit", *args)
        assert result.returncode == 0, result.output
        return result.stdout.split()

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(backend: Backend, project: tuple[Path, Path]) -> Iterator[Workers]:
    found = Workers(backend, *project)
    yield found
    found.stop_all()


def _wait(
    predicate: Callable[[], bool], worker: subprocess.Popen[str], timeout: float = 90
) -> None:
    """wait_for, showing the worker's output if the condition never comes."""
    try:
        wait_for(predicate, timeout=timeout)
    except AssertionError:
        worker.kill()
        raise AssertionError(
            f"condition not met in time; worker said:\n{_output(worker)}"
        ) from None


def _output(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"worker still running after {timeout} s; it said:\n{out}") from None
    return out


def test_drain_never_starts_a_run_after_stopping(
    workers: Workers, project: tuple[Path, Path]
) -> None:
    """Fault: SIGTERM to a worker a random moment (seeded) after a run was submitted, while
    another runs (3 times, soak: 30; local and Ray).
    Promise: no run starts after "stopping": each one that started was announced before
    it; the rest stay queued, unclaimed, never executed; the running one finishes."""
    root, witness = project
    rng = random.Random(5)
    for attempt in range(iterations(3, 30)):
        (first,) = workers.submit("--", "python", "sleeper.py", "2")
        worker = workers.start()
        _wait(lambda f=first: read_run(root / "runs" / f)["status"] != "queued", worker)
        (late,) = workers.submit("--", "python", "sleeper.py", "0")
        time.sleep(rng.uniform(0, 0.5))
        worker.send_signal(signal.SIGTERM)
        log = _output(worker)
        assert worker.returncode == 0, log
        stopping = log.index("stopping: no new runs")
        for name in (first, late):
            if read_run(root / "runs" / name)["status"] != "queued":
                assert log.find(f"started {name}") in range(0, stopping), (attempt, log)
            else:
                assert not (witness / f"{name}.started").exists()
                assert not (root / "runs" / name / rd.CLAIM).exists()
        assert read_run(root / "runs" / first)["status"] == "finished"
    drain = workers.start("--once")
    _output(drain)
    assert {read_run(r)["status"] for r in runs_of(root / "runs")} == {"finished"}


def test_no_overtaking_unless_backfill(workers: Workers, project: tuple[Path, Path]) -> None:
    """Fault: every GPU taken by two 2-GPU runs; a 2-GPU run of higher priority and a CPU run
    wait behind them (local and Ray).
    Promise: nothing overtakes the first in line; with --backfill the CPU run does."""
    root, witness = project

    def blockers() -> list[str]:
        return [n for _ in range(2) for n in workers.submit(
            "--gpus", "2", "--priority", "9", "--", "python", "sleeper.py", "8")]  # fmt: skip

    def started(names: list[str]) -> Callable[[], bool]:
        return lambda: all((witness / f"{n}.started").exists() for n in names)

    first = blockers()
    (big,) = workers.submit("--gpus", "2", "--priority", "5", "--", "python", "sleeper.py", "0")
    (small,) = workers.submit("--gpus", "0", "--", "python", "sleeper.py", "0")
    worker = workers.start()
    _wait(started(first), worker)
    time.sleep(2)
    assert read_run(root / "runs" / small)["status"] == "queued"  # the big one is first in line
    worker.send_signal(signal.SIGTERM)
    assert "stopping" in _output(worker)
    assert read_run(root / "runs" / small)["status"] == "queued"
    second = blockers()  # again all GPUs taken, now with --backfill
    backfill = workers.start("--backfill", "--once")
    _wait(lambda: (witness / f"{small}.ended").exists(), backfill)
    assert not any((witness / f"{n}.ended").exists() for n in second)  # it overtook
    log = _output(backfill, timeout=180)
    big_info = read_run(root / "runs" / big)
    assert big_info["status"] == "finished" and len(big_info["gpus"]) == 2, log


def test_cancel_during_start_up_stops_the_program(
    workers: Workers, project: tuple[Path, Path]
) -> None:
    """Fault: `xp cancel` the moment a worker has claimed a run, while it starts the program
    (3 times, soak: 30; local and Ray).
    Promise: the program is stopped (or never started): it never runs to its end."""
    root, witness = project
    worker = workers.start()
    for _ in range(iterations(3, 30)):
        (name,) = workers.submit("--", "python", "sleeper.py", "30")
        wait_for(lambda n=name: ((root / "runs" / n / rd.CLAIM).exists()
                 and "worker" in (root / "runs" / n / rd.CLAIM).read_text())
                 or read_run(root / "runs" / n)["status"] != "queued", timeout=90)  # fmt: skip
        result = workers.xp("cancel", name)
        assert result.returncode == 0, result.output
        wait_for(lambda n=name: read_run(root / "runs" / n)["status"] in rd.ENDED, timeout=60)
        assert read_run(root / "runs" / name)["status"] in ("cancelled", "killed")
        assert not (witness / f"{name}.ended").exists()
    worker.send_signal(signal.SIGTERM)
    _output(worker)


def test_killed_mid_run_is_lost_then_requeued_once(workers: Workers, project: tuple[Path, Path],
                                                   backend: Backend) -> None:  # fmt: skip
    """Fault: kill -9 of the worker running a run (local), of the Ray node running it (Ray).
    Promise: the run is `lost`, requeued exactly once (local: by two rescuing workers at
    once), and the copy finishes (Ray: is given back to the queue by the draining
    dispatcher, its node gone)."""
    root, witness = project
    if backend.name == "ray":
        # The node with the run dies; the dispatcher lives on and requeues it.
        (name,) = workers.submit("--gpus", "2", "--label", "n2", "--", "python", "sleeper.py", "60")
        dispatcher = workers.start("--requeue-lost")
        _wait(lambda: (witness / f"{name}.started").exists(), dispatcher)
        _wait(lambda: read_run(root / "runs" / name).get("node") is not None, dispatcher)
        node = read_run(root / "runs" / name)["node"]
        assert backend.cache is not None
        _kill_tree(_ray_node_pids(backend.cache, node))
        wait_for(lambda: "requeued_as" in read_run(root / "runs" / name), timeout=90)
        dispatcher.send_signal(signal.SIGTERM)
        _output(dispatcher)
        _rejoin(backend, node)
    else:
        (name,) = workers.submit("--", "python", "sleeper.py", "60")
        worker = workers.start()
        wait_for(lambda: (witness / f"{name}.started").exists(), timeout=90)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        rescuers = [workers.start("--requeue-lost", "--once") for _ in range(2)]
        for rescuer in rescuers:
            _output(rescuer)
    info = read_run(root / "runs" / name)
    assert info["status"] == "lost", info
    copies = [r for r in runs_of(root / "runs") if read_run(r).get("rerun_of") == name]
    assert [c.name for c in copies] == [info["requeued_as"]]
    if backend.name == "local":
        assert read_run(copies[0])["status"] == "finished"
    else:  # no node offers its label now: the draining dispatcher gave it back
        assert read_run(copies[0])["status"] == "queued"


def _rejoin(backend: Backend, node: str) -> None:
    """Start the killed node again, for the next tests."""
    env = {**os.environ, **backend.env, "XP_CACHE_DIR": str(backend.cache)}
    for path in (Path(str(backend.cache)) / "ray" / "nodes").glob(f"{node}-*.json"):
        path.unlink()
    joined = subprocess.run([*XP, "cluster", "join", backend.address, "--node-ip", node,
                             "--label", "n2", "--num-gpus", "2", "--num-cpus", "3",
                             "--temp-dir", str(backend.temp)], env=env, capture_output=True,
                            text=True, timeout=180)  # fmt: skip
    assert joined.returncode == 0, joined.stdout + joined.stderr


def _kill_tree(pids: list[int]) -> None:
    import psutil

    victims = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            victims += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    for proc in victims:
        try:
            proc.kill()
        except psutil.Error:
            pass


def test_resumable_run_preempted_three_ways_is_one_run_of_four_attempts(
    workers: Workers, project: tuple[Path, Path], backend: Backend
) -> None:
    """Fault: a resumable run preempted by a worker's second SIGTERM, lost with its worker
    (kill -9, then --requeue-lost; on Ray the dispatcher), and exiting 75 itself.
    Promise: one finished run of 4 attempts, every step logged once and in order, each
    attempt resuming from the checkpoint the last one saved (checked: step 40)."""
    root, witness = project
    (name,) = workers.submit("--resumable", "--", "python", "resumable.py")
    run = root / "runs" / name

    def steps() -> list[int]:
        lines = (run / rd.METRICS).read_text().splitlines()
        return [json.loads(line)["step"] for line in lines if '"step"' in line]

    worker = workers.start()
    _wait(lambda: len(steps()) >= 10, worker, timeout=120)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)  # preempt: back to the queue as attempt 2
    _output(worker)
    assert read_run(run)["status"] == "queued" and read_run(run)["attempt"] == 2
    worker = workers.start()
    done_in_1 = len(steps())

    def attempt_2_ran() -> bool:
        return "2:" in (witness / "resumed-from").read_text() and len(steps()) >= done_in_1 + 8

    _wait(attempt_2_ran, worker, timeout=120)
    worker.send_signal(signal.SIGKILL)  # lost with its worker
    worker.wait()
    rescuer = workers.start("--requeue-lost", "--once")
    log = _output(rescuer, timeout=240)
    info = read_run(run)
    assert info["status"] == "finished", (info, log)
    assert info["attempt"] == 4, (info["attempts"], log)
    assert [a["attempt"] for a in info["attempts"]] == [1, 2, 3, 4]
    assert [a["status"] for a in info["attempts"]][2] == "failed"  # exit 75: requeue me
    assert info["attempts"][2]["exit_code"] == 75
    assert steps() == list(range(60))
    resumed = [line.split(":") for line in (witness / "resumed-from").read_text().split()]
    assert [int(a) for a, _ in resumed] == [1, 2, 3, 4]
    assert int(resumed[0][1]) == 0 and all(int(s) > 0 for _, s in resumed[1:])
    assert int(resumed[3][1]) == 40  # attempt 3 saved step 39, then exited 75 at step 40
    output = (run / rd.OUTPUT_LOG).read_text()
    assert all(f"attempt {n} of {name}" in output for n in (2, 3, 4))
    assert len([r for r in runs_of(root / "runs")]) == 1  # one run, not four trials
    shown = workers.xp("show", name)
    assert shown.returncode == 0 and "attempts (4, resumable)" in shown.stdout
    assert "exit 75" in shown.stdout


def test_preempt_stops_a_resumable_run_of_lower_priority(
    workers: Workers, project: tuple[Path, Path]
) -> None:
    """Fault: every GPU taken by runs of priority 0, a resumable one and (started after
    it) a plain one; a 2-GPU run of priority 5 arrives at a `--preempt` worker.
    Promise: only the resumable run is stopped; it goes back as its next attempt and
    resumes from its checkpoint after the urgent run; the plain run is never stopped."""
    root, witness = project
    (low,) = workers.submit("--resumable", "--gpus", "2", "--", "python", "resumable.py")
    worker = workers.start("--preempt")
    _wait(lambda: (witness / "resumed-from").exists(), worker)
    (plain,) = workers.submit("--gpus", "2", "--", "python", "sleeper.py", "8")
    _wait(lambda: (witness / f"{plain}.started").exists(), worker)
    time.sleep(1)  # a few steps with a checkpoint
    (urgent,) = workers.submit("--gpus", "2", "--priority", "5", "--", "python", "sleeper.py", "0")
    _wait(lambda: (witness / f"{urgent}.ended").exists(), worker)
    assert not (witness / f"{plain}.ended").exists()  # the urgent run did not wait for it
    _wait(lambda: read_run(root / "runs" / low)["status"] == "finished", worker, timeout=120)
    worker.send_signal(signal.SIGTERM)
    log = _output(worker)
    assert log.count("preempting") == 1 and f"preempting {low} (priority 0)" in log, log
    info = read_run(root / "runs" / low)
    assert [a["attempt"] for a in info["attempts"]] == [1, 2], info["attempts"]
    resumed = (witness / "resumed-from").read_text().split()
    assert resumed[0] == "1:0" and resumed[1].startswith("2:") and resumed[1] != "2:0"
    assert read_run(root / "runs" / plain)["status"] == "finished"
    assert read_run(root / "runs" / urgent)["status"] == "finished"
