"""The queue end to end: xp submit, real worker processes, fake GPUs, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import XP, FakeGpus, Result, git, runs_of, wait_for
from conftest import read_run as info
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration

SHOW_GPUS = textwrap.dedent(
    """\
    import os, sys, time
    print("CVD=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), flush=True)
    print("VERSION", open("version.txt").read().strip(), flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """
)


@pytest.fixture
def project(git_project: Path) -> Path:
    (git_project / "show.py").write_text(SHOW_GPUS)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "show")
    return git_project


@pytest.fixture
def workers() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `xp worker` processes; every one is stopped (by PID) at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*XP, "worker", *args], cwd=cwd, env={**os.environ, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def submit(xp: Callable[..., Result], cwd: Path, *args: str) -> list[str]:
    result = xp("submit", *args, cwd=cwd)
    assert result.returncode == 0, result.output
    return result.stdout.split()


def test_runs_land_on_free_gpus_never_the_busy_one(
    project: Path,
    runs_root: Path,
    gpu_file: FakeGpus,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    names = [
        n
        for i in range(5)
        for n in submit(xp, project, "--gpus", "1", "--", "python", "show.py", "1")
    ]
    assert len(names) == 5 and all(info(runs_root / n)["status"] == "queued" for n in names)
    (project / "version.txt").write_text("v2-after-submit\n")  # edits after submit change nothing
    git(project, "commit", "-qam", "v2")
    worker = workers("--once", cwd=project)
    assert worker.wait(timeout=120) == 0
    log = worker.stdout.read() if worker.stdout else ""
    seen = []
    for name in names:
        run = runs_root / name
        meta = info(run)
        assert meta["status"] == "finished", (name, meta.get("reason"), log)
        output = (run / rd.OUTPUT_LOG).read_text()
        assert "VERSION v1" in output
        assert f"CVD={meta['gpus'][0]}" in output  # type: ignore[index]
        seen.append(meta["gpus"][0])  # type: ignore[index]
        env = json.loads((run / rd.ENV_JSON).read_text())
        assert env["env"]["variables"]["CUDA_VISIBLE_DEVICES"] == str(meta["gpus"][0])  # type: ignore[index]
    assert 1 not in seen and set(seen) <= {0, 2, 3}
    assert "started" in log


def test_cpu_runs_get_no_gpu_and_labels_route_runs(
    project: Path,
    runs_root: Path,
    gpu_file: FakeGpus,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    (cpu,) = submit(xp, project, "--gpus", "0", "--", "python", "show.py")
    (a100,) = submit(xp, project, "--label", "a100", "--", "python", "show.py")
    plain = workers("--once", cwd=project)
    assert plain.wait(timeout=60) == 0
    assert "CVD=\n" in (runs_root / cpu / rd.OUTPUT_LOG).read_text()  # CPU only: GPUs hidden
    assert info(runs_root / a100)["status"] == "queued"  # no worker with its label ran
    labelled = workers("--once", "--label", "a100", cwd=project)
    assert labelled.wait(timeout=60) == 0
    assert info(runs_root / a100)["status"] == "finished"


def test_queue_explains_waiting_runs(
    project: Path,
    runs_root: Path,
    gpu_file: FakeGpus,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    submit(xp, project, "--gpus", "8", "--", "python", "show.py")
    submit(xp, project, "--label", "tpu", "--", "python", "show.py")
    assert "no worker is alive" in xp("queue", cwd=project).stdout
    worker = workers(cwd=project, env={"XP_HEARTBEAT_INTERVAL": "0.5"})
    wait_for(lambda: "GPU(s)" in xp("status", cwd=project).stdout)
    view = xp("queue", cwd=project).stdout
    assert "needs 8 GPUs; the largest live worker has 4" in view
    assert "no live worker has label tpu" in view
    status = xp("status", cwd=project).stdout
    assert "4 GPU(s), 0/4 running" in status
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert all(info(r)["status"] == "queued" for r in runs_of(runs_root))


def test_priority_order_and_no_overtaking_unless_backfill(
    project: Path,
    runs_root: Path,
    gpu_file: FakeGpus,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    gpu_file.set([{"name": "A"}, {"name": "B", "processes": [{"pid": 77, "used_mib": 9000}]}])
    (small,) = submit(xp, project, "--gpus", "1", "--", "python", "show.py")
    (big,) = submit(xp, project, "--gpus", "2", "--priority", "5", "--", "python", "show.py")
    worker = workers(cwd=project)
    time.sleep(3)
    assert info(runs_root / small)["status"] == "queued"  # the big one is first in line
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    backfill = workers("--backfill", cwd=project)
    wait_for(lambda: info(runs_root / small)["status"] == "finished")
    assert info(runs_root / big)["status"] == "queued"
    gpu_file.set([{"name": "A"}, {"name": "B"}])  # the colleague's job ended
    wait_for(lambda: info(runs_root / big)["status"] == "finished")
    assert info(runs_root / big)["gpus"] == [0, 1]
    backfill.send_signal(signal.SIGTERM)
    backfill.wait(timeout=30)


def test_cancel_queued_running_and_finished(
    project: Path,
    runs_root: Path,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    (long,) = submit(xp, project, "--", "python", "show.py", "60")
    (queued,) = submit(xp, project, "--", "python", "show.py")
    worker = workers("--max-jobs", "1", cwd=project, env={"XP_KILL_GRACE": "1"})
    wait_for(lambda: "CVD=" in (runs_root / long / rd.OUTPUT_LOG).read_text())
    cancelled = xp("cancel", queued, cwd=project)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    assert info(runs_root / queued)["status"] == "cancelled"
    assert "stopping" in xp("cancel", long, cwd=project).stdout
    wait_for(lambda: info(runs_root / long)["status"] == "cancelled", timeout=30)
    assert info(runs_root / long)["reason"].startswith("cancelled (xp cancel by ")
    again = xp("cancel", long, cwd=project)
    assert again.returncode == 2 and "is cancelled; only queued and running runs" in again.stderr
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_sigterm_drains_and_second_sigterm_requeues(
    project: Path,
    runs_root: Path,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    (first,) = submit(xp, project, "--", "python", "show.py", "2")
    (second,) = submit(xp, project, "--", "python", "show.py", "60")
    worker = workers("--max-jobs", "1", cwd=project)
    wait_for(lambda: info(runs_root / first)["status"] == "running")
    worker.send_signal(signal.SIGTERM)  # drain: the running one finishes, nothing new starts
    assert worker.wait(timeout=60) == 0
    assert info(runs_root / first)["status"] == "finished"
    assert info(runs_root / second)["status"] == "queued"
    worker = workers("--max-jobs", "1", cwd=project, env={"XP_KILL_GRACE": "1"})
    wait_for(lambda: info(runs_root / second)["status"] == "running")
    time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert info(runs_root / second)["status"] == "killed"
    requeued = info(runs_root / second)["requeued_as"]
    assert info(runs_root / str(requeued))["status"] == "queued"


def test_worker_killed_9_leaves_lost_then_requeued_once(
    project: Path,
    runs_root: Path,
    tmp_path: Path,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    fast = {"XP_HEARTBEAT_INTERVAL": "0.3", "XP_HEARTBEAT_TIMEOUT": "2"}
    rescued = tmp_path / "rescued"  # once it exists, the command ends at once
    wait = f"import os, time; time.sleep(0 if os.path.exists({str(rescued)!r}) else 60)"
    (name,) = submit(xp, project, "--", "python", "-c", wait)
    worker = workers(cwd=project, env=fast)
    wait_for(lambda: info(runs_root / name)["status"] == "running")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    rescued.touch()
    wait_for(lambda: "lost" in xp("ls", "--json", cwd=project, env=fast).stdout, timeout=30)
    rescuers = [workers("--requeue-lost", "--once", cwd=project, env=fast) for _ in range(2)]
    for rescuer in rescuers:
        assert rescuer.wait(timeout=90) == 0
    runs = runs_of(runs_root)
    assert len(runs) == 2  # requeued exactly once, then run by one of them
    new = info(runs[1])
    assert new["rerun_of"] == name and new["status"] == "finished"


def test_worker_without_the_project_uses_the_bundle(
    project: Path,
    runs_root: Path,
    tmp_path: Path,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    (good,) = submit(xp, project, "--", "python", "show.py")
    elsewhere = tmp_path / "gpu-server"  # no repository here: code comes from the bundle
    elsewhere.mkdir()
    worker = workers("--once", cwd=elsewhere, env={"XP_RUNS": str(runs_root)})
    assert worker.wait(timeout=60) == 0
    assert "VERSION v1" in (runs_root / good / rd.OUTPUT_LOG).read_text()


def test_a_corrupt_bundle_fails_one_run_not_the_worker(
    project: Path,
    runs_root: Path,
    tmp_path: Path,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    (project / "version.txt").write_text("dirty\n")  # its own snapshot, its own bundle
    (bad,) = submit(xp, project, "--", "python", "show.py")
    git(project, "checkout", "-q", "version.txt")
    for bundle in (runs_root / ".xp" / "bundles").iterdir():
        bundle.write_bytes(b"not a bundle")
    (project / "version.txt").write_text("other\n")
    (good,) = submit(xp, project, "--", "python", "show.py")
    elsewhere = tmp_path / "gpu-server"
    elsewhere.mkdir()
    worker = workers("--once", cwd=elsewhere, env={"XP_RUNS": str(runs_root)})
    assert worker.wait(timeout=60) == 0
    assert info(runs_root / bad)["status"] == "failed"
    assert "unusable" in str(info(runs_root / bad)["reason"])
    assert info(runs_root / good)["status"] == "finished"


def test_requeue_and_run_queue_flag(
    project: Path,
    runs_root: Path,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    result = xp("run", "--queue", "--", "python", "-c", "import sys; sys.exit(4)", cwd=project)
    assert result.returncode == 0
    (name,) = result.stdout.split()
    assert workers("--once", cwd=project).wait(timeout=60) == 0
    assert info(runs_root / name)["status"] == "failed" and info(runs_root / name)["exit_code"] == 4
    requeued = xp("requeue", name, cwd=project)
    assert requeued.returncode == 0
    new = requeued.stdout.strip()
    assert new.split("_")[0] == name.split("_")[0] and new.split("_")[1] == "002"
    assert info(runs_root / new)["status"] == "queued"
    refused = xp("requeue", new, cwd=project)
    assert refused.returncode == 2 and "is queued; only failed" in refused.stderr


def test_concurrent_workers_take_each_run_once(
    project: Path,
    runs_root: Path,
    xp: Callable[..., Result],
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    names = submit(xp, project, "--", "python", "-c", "pass")
    names += [n for _ in range(11) for n in submit(xp, project, "--", "python", "-c", "pass")]
    procs = [workers("--once", "--max-jobs", "2", cwd=project) for _ in range(3)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    holders = [json.loads((runs_root / n / rd.CLAIM).read_text()) for n in names]
    assert {h["kind"] for h in holders} == {"worker"}  # every run was claimed by a worker
    assert {h["pid"] for h in holders} <= {p.pid for p in procs}  # ... one of these three
    assert all(info(runs_root / n)["status"] == "finished" for n in names)
    logs = "".join(p.stdout.read() for p in procs if p.stdout)
    assert sum(logs.count(f"started {n}") for n in names) == 12  # each started exactly once


def test_a_waiting_worker_says_what_it_waits_for(
    git_project: Path, gpu_file: FakeGpus, xp: Callable[..., Result]
) -> None:
    """One free GPU (the other used by a colleague's process), two 1-GPU runs: the
    second waits, and the worker says for what — the GPU held by the first, then its
    hand-out grace — instead of looking hung; a run it can never take is named."""
    gpu_file.set([{"name": "A"}, {"name": "B", "processes": [{"pid": 77, "used_mib": 9000}]}])
    for _ in range(2):
        assert xp("submit", "--gpus", "1", "--", "python", "-c", "import time; time.sleep(1)",
                  cwd=git_project).returncode == 0  # fmt: skip
    assert xp("submit", "--gpus", "4", "--", "python", "-c", "pass",
              cwd=git_project).returncode == 0  # fmt: skip
    done = xp("worker", "--once", cwd=git_project, env={"XP_GPU_GRACE": "6"}, timeout=120)
    assert done.returncode == 0, done.output
    assert "waits: needs 1 free GPU(s); GPU 0 held by" in done.stdout, done.stdout
    assert "GPU 1 process 77 on it" in done.stdout
    assert "just handed out (free again 6 s after: XP_GPU_GRACE)" in done.stdout
    assert (
        "left in the queue:" in done.stdout and "(needs 4 GPU(s), this worker has 2)" in done.stdout
    )
    assert done.stdout.count("GPU 0 held by") == 1  # said when the reason changes, not each look
