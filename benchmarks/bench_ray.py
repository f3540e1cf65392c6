"""Ray scenario for `make bench`: a two-node cluster on loopback (127.0.0.2 head,
127.0.0.3 node, 4 fake GPUs each), started with `xp cluster` and stopped by PID.
Queue → running latency, 8 runs of 1 s on 8 GPUs, what streaming a run's files home
costs a run that logs 10,000 points per second (against the same run local), and a
1,000-run queue drained by the Ray backend."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_queue import DRAIN_RUNS, drain_seconds
from bench_queue import _project as _queue_project

LOGGER = """\
import time, xpkit as xp
run = xp.init()
start = time.perf_counter()
acc = 0.0
for i in range(50_000):          # ~10,000 points/s of logging beside real work
    for j in range(1000):
        acc += j * 0.5
    run.log({"x": acc})
print("WORK", time.perf_counter() - start, flush=True)
"""


def _xp(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(["xp", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


def _wait_status(run_json: Path, wanted: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info: dict[str, Any] = json.loads(run_json.read_text())
        if info.get("status") in wanted:
            return info
        time.sleep(0.02)
    raise RuntimeError(f"{run_json} never reached {wanted}")


def _work_seconds(run: Path) -> float:
    for line in (run / "output.log").read_text().splitlines():
        if line.startswith("WORK "):
            return float(line.split()[1])
    raise RuntimeError(f"{run}: no WORK line")


def scenario_ray(work: Path, reps: int) -> dict[str, Any]:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {}
    project = work / "ray-project"
    project.mkdir()
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / ".gitignore").write_text("/runs/\n")
    (project / "logger.py").write_text(LOGGER)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=project, check=True)
    env = {**os.environ, "XP_CACHE_DIR": str(work / "ray-cache"), "XP_GPU_PROBE": "none"}
    temp = Path(tempfile.mkdtemp(prefix="xprb", dir="/tmp"))
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.2:{port}"
    common = ["--num-gpus", "4", "--num-cpus", "4", "--temp-dir", str(temp)]
    dispatcher = None
    try:
        _xp(
            ["cluster", "head", "--node-ip", "127.0.0.2", "--port", str(port), *common],
            project,
            env,
        )
        _xp(["cluster", "join", address, "--node-ip", "127.0.0.3", *common], project, env)
        dispatcher = subprocess.Popen(["xp", "worker", "--ray", address, "--node-ip", "127.0.0.2"],
                                      cwd=project, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
        runs = project / "runs"
        latencies = []
        for rep in range(reps + 1):
            start = time.time()
            name = _xp(
                ["submit", "--gpus", "1", "--", "python", "-c", "pass"], project, env
            ).split()[0]
            info = _wait_status(runs / name / "run.json", ("running", "finished", "failed"))
            if rep:  # the first one also starts the dispatcher's connection and actor
                latencies.append(info["started"] - start)
        start = time.time()
        sleeper = ["--gpus", "1", "--", "python", "-c", "import time; time.sleep(1)"]
        names = [_xp(["submit", *sleeper], project, env).split()[0] for _ in range(8)]
        for name in names:
            _wait_status(runs / name / "run.json", ("finished", "failed"))
        eight = time.time() - start
        remote, local = [], []
        for _ in range(reps):
            name = _xp(
                ["submit", "--gpus", "0", "--", "python", "logger.py"], project, env
            ).split()[0]
            _wait_status(runs / name / "run.json", ("finished", "failed"))
            remote.append(_work_seconds(runs / name))
            _xp(["run", "--", "python", "logger.py"], project, env)
            local.append(_work_seconds(sorted(runs.glob("*_logger.py*"), key=os.path.getmtime)[-1]))
        dispatcher.send_signal(signal.SIGTERM)
        dispatcher.wait(timeout=60)
        dispatcher = None
        drain_project = _queue_project(work / "ray-drain", DRAIN_RUNS)
        subprocess.run(["xp", "submit", "exp/01_grid.xp.toml", "--gpus", "1"], cwd=drain_project,
                       env=env, check=True, capture_output=True)  # fmt: skip
        drained = drain_seconds(drain_project, env, [["--ray", address, "--node-ip", "127.0.0.2"]])
        return {
            "latency_s": statistics.median(latencies), "eight_s": eight,
            "remote_work_s": statistics.median(remote), "local_work_s": statistics.median(local),
            "drain_s": drained, "drain_runs": DRAIN_RUNS,
        }  # fmt: skip
    finally:
        if dispatcher is not None:
            dispatcher.send_signal(signal.SIGTERM)
            try:
                dispatcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                dispatcher.kill()
        subprocess.run(["xp", "cluster", "stop"], cwd=project, env=env, capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
