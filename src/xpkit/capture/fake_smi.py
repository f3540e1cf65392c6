"""A fake `nvidia-smi`, for tests and demos on machines without GPUs.

    XP_FAKE_GPUS=gpus.json python -m xpkit.capture.fake_smi --query-gpu=...

gpus.json: {"driver": "550.54.15", "cuda": "12.4", "gpus": [{"name": "NVIDIA A100",
"memory_total_mib": 40960, "memory_used_mib": 0, "utilization_pct": 35, "temperature_c": 61,
"processes": [{"pid": 4242, "used_mib": 20000}]}, ...]}. Put a script that runs this
module on PATH as `nvidia-smi` and set XP_GPU_PROBE=nvidia-smi (`--install DIR` writes
that script and a gpus.json of 4 GPUs, one busy, and prints what to export). Edit the file
to simulate a colleague starting or stopping a job. Answers what the probe asks (the
fields of --query-gpu in the order asked), as nvidia-smi would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from xpkit.settings import XP_FAKE_GPUS


def load() -> dict[str, Any]:
    path = XP_FAKE_GPUS.get()
    if path is None:
        raise SystemExit("fake nvidia-smi: set XP_FAKE_GPUS to a JSON file of GPUs")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


SAMPLE = {"driver": "550.54.15", "cuda": "12.4", "gpus": [
    {"name": "Fake A100"},
    {"name": "Fake A100", "memory_used_mib": 30000,
     "processes": [{"pid": 4242, "used_mib": 30000}]},
    {"name": "Fake A100"}, {"name": "Fake A100"},
]}  # fmt: skip


def install(folder: Path) -> None:
    """Write `folder/nvidia-smi` (with its #! line) and, unless there, `gpus.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m xpkit.capture.fake_smi "$@"\n')
    script.chmod(0o755)
    gpus = folder / "gpus.json"
    if not gpus.exists():
        gpus.write_text(json.dumps(SAMPLE, indent=1) + "\n")
    print(f"# wrote {script} and {gpus}; now:")
    print(f'export PATH="{folder.resolve()}:$PATH" XP_FAKE_GPUS="{gpus.resolve()}" '
          "XP_GPU_PROBE=nvidia-smi")  # fmt: skip


def main(argv: list[str]) -> int:
    if argv[:1] == ["--install"]:
        if len(argv) != 2:
            raise SystemExit("usage: python -m xpkit.capture.fake_smi --install DIR")
        install(Path(argv[1]))
        return 0
    data = load()
    gpus = data.get("gpus", [])
    driver = data.get("driver", "550.54.15")
    query = next((a for a in argv if a.startswith("--query-")), "")
    if query.startswith("--query-gpu="):
        fields = query.removeprefix("--query-gpu=").split(",")
        for index, gpu in enumerate(gpus):
            values = {
                "index": index, "uuid": _uuid(index), "name": gpu.get("name", "NVIDIA Fake GPU"),
                "memory.total": gpu.get("memory_total_mib", 16384),
                "memory.used": gpu.get("memory_used_mib", 0), "driver_version": driver,
                "utilization.gpu": gpu.get("utilization_pct", "[N/A]"),
                "temperature.gpu": gpu.get("temperature_c", "[N/A]"),
            }  # fmt: skip
            print(", ".join(str(values.get(f, "[N/A]")) for f in fields))
    elif query.startswith("--query-compute-apps="):
        for index, gpu in enumerate(gpus):
            for proc in gpu.get("processes", []):
                print(f"{_uuid(index)}, {proc.get('pid', 0)}, {proc.get('used_mib', 0)}")
    else:
        print(f"| NVIDIA-SMI {driver}   Driver Version: {driver}   "
              f"CUDA Version: {data.get('cuda', '12.4')} |")  # fmt: skip
    return 0


def _uuid(index: int) -> str:
    return f"GPU-fake-{index:04d}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
