"""`xp top` against a real GPU: what the workers write and `xp top` shows.

Run from the repository root on a machine with an NVIDIA GPU and PyTorch (no install
needed; click, psutil, nvidia-ml-py, rich, git):

    PYTHONPATH=src python3 tools/device_top_check.py [OUT_DIR]

Checks that the kept-open NVML monitor reads utilisation, temperature and memory (and
how long a look takes); that a colleague's process (torch, 2 GiB, busy) shows on its
GPU with user, pid, command and MiB, and that a queued run waits for it; that once it
is gone the worker's run holds the GPU, its own CUDA process counted as the run's, not
as a foreigner; and what `xp top --once` prints in each state. Writes top_check.json
and the screens to OUT_DIR; exits non-zero on the first disagreement.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xpkit.capture.gpus import GpuMonitor
from xpkit.queue.hostview import HostView

failures: list[str] = []
BUSY = (
    "import sys, time, torch; x = torch.empty(2**31, dtype=torch.uint8, device='cuda:0'); "
    "a = torch.randn(8192, 8192, device='cuda:0'); print('holding', flush=True)\n"
    "while True: a = (a @ a).clamp_(-1, 1); torch.cuda.synchronize()"
)
JOB = """\
import time, torch
import xpkit as xp
run = xp.init()
a = torch.randn(4096, 4096, device="cuda")
for step in range(40):
    a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
    run.log({"loss": 1.0 / (step + 1)}, step=step)
    print("step", step, flush=True)
    time.sleep(0.5)
"""


def check(condition: bool, message: str) -> None:
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def wait(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["XP_GPU_PROBE"] = "auto"
    monitor = GpuMonitor()
    first = monitor.report()
    check(first.source == "nvml", f"monitor reads through NVML ({first.source})")
    looks = []
    for _ in range(50):
        started = time.perf_counter()
        monitor.report()
        looks.append(time.perf_counter() - started)
    gpu = first.gpus[0]
    check(gpu.temperature_c is not None, f"temperature {gpu.temperature_c} C")
    check(gpu.utilization_pct is not None, f"utilisation {gpu.utilization_pct} %")

    busy = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    assert busy.stdout is not None
    check(busy.stdout.readline().strip() == "holding", "a colleague's torch process holds GPU 0")
    time.sleep(3)
    view = HostView(Path(tempfile.mkdtemp()))
    snapshot = view.snapshot({})
    gpu0 = snapshot["gpus"][0]
    mine = [p for p in gpu0["processes"] if p["pid"] == busy.pid]
    check(bool(mine), f"its pid {busy.pid} is on GPU 0: {gpu0['processes']}")
    if mine:
        check(mine[0]["user"] != "?" and "python" in mine[0]["command"],
              f"named: {mine[0]['user']} {mine[0]['command'][:60]}")  # fmt: skip
        check(mine[0]["mib"] >= 2048, f"{mine[0]['mib']} MiB >= 2048")
    check((gpu0["util"] or 0) > 0, f"GPU 0 busy: {gpu0['util']} %")
    views = []
    for _ in range(50):
        started = time.perf_counter()
        view.snapshot({})
        views.append(time.perf_counter() - started)

    tmp = Path(tempfile.mkdtemp())
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "XP_CACHE_DIR": str(tmp / "cache"), "XP_GPU_GRACE": "2",
           "XP_HEARTBEAT_INTERVAL": "1", "PYTHONPATH": os.pathsep.join(
               p for p in (src, os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    xp = [sys.executable, "-m", "xpkit.cli.main"]
    project = tmp / "lab"
    project.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / "job.py").write_text(JOB)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=project, check=True)
    submitted = subprocess.run([*xp, "submit", "--gpus", "1", "--", sys.executable, "job.py"],
                               cwd=project, env=env, capture_output=True, text=True)  # fmt: skip
    check(submitted.returncode == 0, f"xp submit: {submitted.stderr[-300:]}")
    name = submitted.stdout.split()[0] if submitted.stdout else "?"
    worker = subprocess.Popen([*xp, "worker"], cwd=project, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip

    def top() -> str:
        return subprocess.run([*xp, "top", "--once"], cwd=project, env={**env, "COLUMNS": "160"},
                              capture_output=True, text=True).stdout  # fmt: skip

    screens = {}
    seen = wait(lambda: f"pid {busy.pid}" in top(), 30)
    screens["busy"] = top()
    check(seen, "xp top shows the colleague's process on GPU 0")
    check("waiting for 1 free GPU" in screens["busy"], "and the queued run waiting for it")
    busy.kill()
    busy.wait()
    run_json = project / "runs" / name / "run.json"
    started = wait(lambda: json.loads(run_json.read_text())["status"] == "running", 90)
    check(started, "the run starts once the GPU is free")
    held = wait(lambda: f"run {name}" in top() and "step 5" in
                (project / "runs" / name / "output.log").read_text(), 60)  # fmt: skip
    screens["running"] = top()
    check(held, "xp top shows the run holding GPU 0")
    worker_files = list((project / "runs" / ".xp" / "workers").glob("*.json"))
    record = json.loads(worker_files[0].read_text()) if worker_files else {}
    host_gpu = (record.get("host_view") or {}).get("gpus", [{}])[0]
    foreign = [p for p in host_gpu.get("processes", []) if not p.get("run")]
    ours = [p for p in host_gpu.get("processes", []) if p.get("run") == name]
    check(bool(ours) and not foreign, f"its CUDA process is the run's: {host_gpu.get('processes')}")
    check(wait(lambda: json.loads(run_json.read_text())["status"] == "finished", 120),
          "the run finishes")  # fmt: skip
    worker.terminate()
    worker.wait(timeout=60)
    result = {
        "nvml_look_ms": round(1000 * statistics.median(looks), 3),
        "host_view_look_ms": round(1000 * statistics.median(views), 3),
        "host_view_percent_of_a_core_every_2s": round(100 * statistics.median(views) / 2, 4),
        "gpu": first.to_json()["gpus"][0], "busy_snapshot": gpu0, "worker_host_gpu": host_gpu,
        "failures": failures,
    }  # fmt: skip
    (out / "top_check.json").write_text(json.dumps(result, indent=2))
    for state, text in screens.items():
        (out / f"top_{state}.txt").write_text(text)
        print(f"--- xp top --once, {state} ---\n{text}")
    print(json.dumps({k: v for k, v in result.items() if "ms" in k or "percent" in k}))
    print(f"\n{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
