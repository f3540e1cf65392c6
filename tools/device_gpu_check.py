"""GPU detection against a real `nvidia-smi`, on a machine with NVIDIA GPUs.

Run from the repository root (no install needed; needs click, psutil, nvidia-ml-py,
git and, for the busy-GPU check, PyTorch):

    PYTHONPATH=src python3 tools/device_gpu_check.py [OUT_DIR]

Checks that both probes (NVML and nvidia-smi) agree with nvidia-smi's own CSV on
count, names, UUIDs, total memory and driver; that a process holding GPU memory is
seen on its GPU by both probes; and that `xp run` records the GPUs in env.json.
Exits non-zero on the first disagreement; writes gpu_check.json to OUT_DIR.
"""

from __future__ import annotations

import json
import os
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
    result = {
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
