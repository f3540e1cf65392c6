"""Queue scenarios for `make bench`: submit → child started with an idle worker,
`xp submit` of a 100-run grid, `xp queue` with 1,000 queued runs, the CPU an idle
worker uses, and a 1,000-run queue drained by 4 workers sharing 8 fake GPUs."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _project(root: Path, grid: int) -> Path:
    root.mkdir(parents=True)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("/runs/\n")
    (root / "xp.toml").write_text('runs = "runs"\n')
    (root / "exp").mkdir()
    values = ", ".join(str(i) for i in range(grid))
    (root / "exp" / "01_grid.xp.toml").write_text(
        f'id = "qbench"\ncommand = "python -c pass"\n[grid]\ni = [{values}]\n'
    )
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=root, check=True)
    return root


def _latency(project: Path, env: dict[str, str], reps: int) -> tuple[float, float]:
    """Median submit → child started, and the idle worker's CPU share."""
    import psutil

    worker = subprocess.Popen(["xp", "worker"], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(2)  # let it settle into its idle loop
        process = psutil.Process(worker.pid)
        before = sum(process.cpu_times()[:2])
        time.sleep(10)
        idle_share = (sum(process.cpu_times()[:2]) - before) / 10
        samples = []
        for _ in range(reps):
            start = time.time()
            out = subprocess.run(["xp", "submit", "--", "python", "-c", "pass"], cwd=project,
                                 env=env, check=True, capture_output=True, text=True)  # fmt: skip
            run_json = project / "runs" / out.stdout.split()[0] / "run.json"
            deadline = time.time() + 30
            while time.time() < deadline:
                started = json.loads(run_json.read_text()).get("started")
                if started:
                    samples.append(started - start)
                    break
                time.sleep(0.01)
        return statistics.median(samples), idle_share
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)


def fake_gpu_env(work: Path, count: int) -> dict[str, str]:
    """`count` idle fake GPUs through xpkit's fake nvidia-smi, no hand-out grace."""
    folder = work / "fake-smi"
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nexec {sys.executable} -m xpkit.capture.fake_smi "$@"\n')
    smi.chmod(0o755)
    gpus = folder / "gpus.json"
    gpus.write_text(json.dumps({"driver": "1", "cuda": "12", "gpus": [{"name": "Fake"}] * count}))
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "XP_FAKE_GPUS": str(gpus),
            "XP_GPU_PROBE": "nvidia-smi", "XP_GPU_GRACE": "0"}  # fmt: skip


def drain_seconds(project: Path, env: dict[str, str], worker_args: list[list[str]]) -> float:
    """Seconds for the given workers (`--once`) to execute every queued run."""
    start = time.perf_counter()
    workers = [subprocess.Popen(["xp", "worker", "--once", *args], cwd=project, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for args in worker_args]  # fmt: skip
    for worker in workers:
        worker.wait(timeout=1800)
    elapsed = time.perf_counter() - start
    runs = [p for p in (project / "runs").iterdir() if not p.name.startswith(".")]
    done = sum(json.loads((p / "run.json").read_text())["status"] == "finished" for p in runs)
    if done != len(runs):
        raise RuntimeError(f"drain: {done} of {len(runs)} runs finished")
    return elapsed


DRAIN_RUNS = int(os.environ.get("XP_BENCH_DRAIN_RUNS", "1000"))


def scenario_drain(work: Path) -> dict[str, Any]:
    """1,000 one-GPU runs of `python -c pass`, 4 workers of 2 jobs on 8 fake GPUs."""
    env = {**os.environ, "XP_CACHE_DIR": str(work / "drain-cache"), **fake_gpu_env(work, 8)}
    project = _project(work / "q-drain", DRAIN_RUNS)
    subprocess.run(["xp", "submit", "exp/01_grid.xp.toml", "--gpus", "1"], cwd=project, env=env,
                   check=True, capture_output=True)  # fmt: skip
    seconds = drain_seconds(project, env, [["--max-jobs", "2"]] * 4)
    return {"drain_s": seconds, "drain_runs": DRAIN_RUNS}


def scenario_queue(work: Path, reps: int) -> dict[str, Any]:
    env = {**os.environ, "XP_CACHE_DIR": str(work / "queue-cache"), "XP_GPU_PROBE": "none"}
    latency, idle = _latency(_project(work / "q-latency", 1), env, reps)
    submits = []
    for rep in range(reps):
        project = _project(work / f"q-grid-{rep}", 100)
        start = time.perf_counter()
        subprocess.run(["xp", "submit", "exp/01_grid.xp.toml"], cwd=project, env=env, check=True,
                       capture_output=True)  # fmt: skip
        submits.append(time.perf_counter() - start)
    big = _project(work / "q-big", 1000)
    subprocess.run(["xp", "submit", "exp/01_grid.xp.toml"], cwd=big, env=env, check=True,
                   capture_output=True)  # fmt: skip
    listing = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(["xp", "queue"], cwd=big, env=env, check=True, capture_output=True)
        listing.append(time.perf_counter() - start)
    return {"latency_s": latency, "idle_cpu": idle, "submit100_s": statistics.median(submits),
            "queue1000_s": statistics.median(listing), **scenario_drain(work)}  # fmt: skip
