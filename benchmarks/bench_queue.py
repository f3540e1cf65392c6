"""Queue scenarios for `make bench`: submit → child started with an idle worker,
`xp submit` of a 100-run grid, `xp queue` with 1,000 queued runs, and the CPU an idle
worker uses."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
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
            "queue1000_s": statistics.median(listing)}  # fmt: skip
