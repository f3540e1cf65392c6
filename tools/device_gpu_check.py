"""GPU detection and assignment against a real `nvidia-smi`, on a machine with GPUs.

Run from the repository root (no install needed; needs click, psutil, nvidia-ml-py,
git and, for the busy-GPU check, PyTorch):

    PYTHONPATH=src python3 tools/device_gpu_check.py [OUT_DIR]

Checks that both probes (NVML and nvidia-smi) agree with nvidia-smi's own CSV on
count, names, UUIDs, total memory and driver; that a process holding GPU memory is
seen on its GPU by both probes; that `xp run` records the GPUs in env.json; and that
an `xp worker` leaves a GPU busy with a foreign process alone, then runs a queued
1-GPU job on it (CUDA_VISIBLE_DEVICES, torch sees exactly that GPU) once it frees up.
Exits non-zero on the first disagreement; writes gpu_check.json to OUT_DIR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xpkit.capture import gpus

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def smi_csv(query: str) -> list[list[str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-{query}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]


JOB = (
    "import os, torch; x = torch.ones(4, device='cuda'); "
    "print('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'], 'count', torch.cuda.device_count(), "
    "'name', torch.cuda.get_device_name(0), 'sum', x.sum().item())"
)


def check_assignment(tmp: Path, gpu_count: int) -> dict[str, object]:
    """A foreign process on every GPU keeps a queued job waiting; it starts when one frees."""
    src = str(Path(gpus.__file__).resolve().parents[2])
    env = {**os.environ, "XP_CACHE_DIR": str(tmp / "cache"), "PYTHONPATH": src,
           "XP_GPU_GRACE": "2", "XP_HEARTBEAT_INTERVAL": "1"}  # fmt: skip
    xp = [sys.executable, "-m", "xpkit.cli.main"]
    project = tmp / "q"
    project.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / "job.py").write_text(JOB + "\n")
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=project, check=True)
    hold = (
        "import sys, time, torch; x = torch.empty(2**30, dtype=torch.uint8, "
        "device='cuda:' + sys.argv[1]); print('holding', flush=True); time.sleep(120)"
    )
    holders = [
        subprocess.Popen([sys.executable, "-c", hold, str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(gpu_count)
    ]
    for holder in holders:
        assert holder.stdout is not None
        holder.stdout.readline()
    submit = subprocess.run([*xp, "submit", "--gpus", "1", "--", sys.executable, "job.py"],
                            cwd=project, env=env, capture_output=True, text=True)  # fmt: skip
    check(submit.returncode == 0, f"xp submit: {submit.stderr[-300:]}")
    name = submit.stdout.split()[0]
    worker = subprocess.Popen([*xp, "worker"], cwd=project, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    time.sleep(8)
    run_json = project / "runs" / name / "run.json"
    waiting = json.loads(run_json.read_text())["status"]
    check(waiting == "queued", f"job waits while every GPU has a foreign process ({waiting})")
    queue = subprocess.run([*xp, "queue"], cwd=project, env=env, capture_output=True, text=True)
    check("waiting for 1 free GPU" in queue.stdout, f"xp queue says why: {queue.stdout[-200:]}")
    status = subprocess.run([*xp, "status"], cwd=project, env=env, capture_output=True, text=True)
    check(f"{gpu_count} GPU(s)" in status.stdout, f"xp status: {status.stdout.strip()}")
    freed = gpu_count - 1
    holders[freed].kill()
    holders[freed].wait()
    deadline = time.time() + 90
    final = waiting
    while time.time() < deadline and final in ("queued", "running"):
        time.sleep(1)
        final = json.loads(run_json.read_text())["status"]
    run = json.loads(run_json.read_text())
    output = (project / "runs" / name / "output.log").read_text()
    check(final == "finished", f"job finished after GPU {freed} freed ({final}: {output[-300:]})")
    check(run.get("gpus") == [freed], f"assigned GPUs {run.get('gpus')} == [{freed}]")
    check(f"CVD={freed} count 1" in output and "sum 4.0" in output, f"job output: {output.strip()}")
    env_json = json.loads((project / "runs" / name / "env.json").read_text())
    seen = env_json["env"]["variables"].get("CUDA_VISIBLE_DEVICES")
    check(seen == str(freed), f"env.json CUDA_VISIBLE_DEVICES={seen}")
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    for holder in holders:
        holder.kill()
    log = worker.stdout.read() if worker.stdout else ""
    print(log)
    return {"run": run, "output": output, "queue": queue.stdout, "status": status.stdout,
            "worker_log": log}  # fmt: skip


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
    truth = smi_csv("gpu=index,uuid,name,memory.total,driver_version")
    nvml = gpus.probe_nvml()
    smi = gpus.probe_nvidia_smi()
    for report in (nvml, smi):
        label = report.source
        check(
            len(report.gpus) == len(truth),
            f"{label}: {len(report.gpus)} GPUs, nvidia-smi {len(truth)}",
        )
        for gpu, row in zip(report.gpus, truth):
            check(gpu.uuid == row[1], f"{label}: GPU {gpu.index} uuid {gpu.uuid}")
            check(gpu.name == row[2], f"{label}: GPU {gpu.index} name {gpu.name!r} vs {row[2]!r}")
            memory = gpu.memory_total_mib
            check(abs(memory - int(row[3])) <= 1, f"{label}: memory {memory} vs {row[3]} MiB")
        check(report.driver == truth[0][4], f"{label}: driver {report.driver} vs {truth[0][4]}")
    check(nvml.cuda == smi.cuda, f"CUDA version nvml {nvml.cuda} vs nvidia-smi {smi.cuda}")
    os.environ["XP_GPU_PROBE"] = "auto"
    check(gpus.probe().source == "nvml", "auto probe picks NVML when the driver is present")

    # A process holding ~2 GiB on GPU 0 must show on GPU 0 in both probes.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import torch, time; x = torch.empty(2 * 2**30, dtype=torch.uint8, device='cuda:0');"
         " print('holding', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    check(holder.stdout.readline().strip() == "holding", "torch allocated 2 GiB on GPU 0")
    time.sleep(1)
    busy = {}
    for probe in (gpus.probe_nvml, gpus.probe_nvidia_smi):
        report = probe()
        pids = [p.pid for p in report.gpus[0].processes]
        busy[report.source] = {"pids": pids, "used_mib": report.gpus[0].memory_used_mib}
        check(holder.pid in pids, f"{report.source}: holder pid {holder.pid} on GPU 0 ({pids})")
        used = report.gpus[0].memory_used_mib
        check(used >= 2048, f"{report.source}: GPU 0 memory used {used} MiB >= 2048")
    holder.kill()
    holder.wait()

    # `xp run` records the GPUs in env.json.
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "p"
        project.mkdir()
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q"], cwd=project, check=True)
        (project / "a.py").write_text("print('hi')\n")
        subprocess.run([*git, "add", "-A"], cwd=project, check=True)
        subprocess.run([*git, "commit", "-qm", "x"], cwd=project, check=True)
        src = str(Path(gpus.__file__).resolve().parents[2])  # xpkit may not be installed
        env = {**os.environ, "XP_CACHE_DIR": str(Path(tmp) / "cache"), "PYTHONPATH": src}
        started = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "xpkit.cli.main", "run", "--", sys.executable, "a.py"],
            cwd=project, env=env, capture_output=True, text=True,
        )  # fmt: skip
        xp_run_s = time.perf_counter() - started
        check(run.returncode == 0, f"xp run exit {run.returncode}: {run.stderr[-500:]}")
        (run_dir,) = [p for p in (project / "runs").iterdir() if not p.name.startswith(".")]
        env_json = json.loads((run_dir / "env.json").read_text())
        recorded = env_json["gpus"]
        check(recorded["source"] == "nvml", f"env.json gpus source {recorded['source']}")
        check([g["name"] for g in recorded["gpus"]] == [r[2] for r in truth],
              f"env.json gpu names {[g['name'] for g in recorded['gpus']]}")  # fmt: skip
    assignment = check_assignment(Path(tempfile.mkdtemp()), len(truth))
    result = {
        "assignment": assignment,
        "truth": truth,
        "nvml": nvml.to_json(),
        "nvidia_smi": smi.to_json(),
        "busy": busy,
        "env_json_gpus": recorded,
        "xp_run_seconds": round(xp_run_s, 3),
        "failures": failures,
    }
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(f"\n{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
