"""GPU probe: NVML first, `nvidia-smi` as the fallback, nothing when neither exists.

Used by env capture (what the run saw) and by the scheduler (which GPUs are free).
Tests fake GPUs with a fake `nvidia-smi` on PATH and XP_GPU_PROBE=nvidia-smi.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys

from xpkit.errors import XpError
from xpkit.settings import XP_GPU_PROBE

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

SMI_TIMEOUT = 20.0


class GpuProbeError(XpError):
    """The GPU probe that was asked for could not run."""


# Plain classes, not dataclasses: every `xp run` captures its GPUs, and `import
# dataclasses` (with inspect) would cost it ~8 ms.


class _Record:
    """Equal when their JSON is; shown as their JSON."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_json() == other.to_json()  # type: ignore[attr-defined,unused-ignore]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()!r})"


class GpuProcess(_Record):
    def __init__(self, pid: int, used_mib: int) -> None:
        self.pid, self.used_mib = pid, used_mib

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "used_mib": self.used_mib}


class Gpu(_Record):
    def __init__(
        self, index: int, uuid: str, name: str, memory_total_mib: int, memory_used_mib: int,
        processes: list[GpuProcess] | None = None,
        utilization_pct: int | None = None,  # None where the board does not say
        temperature_c: int | None = None,
    ) -> None:  # fmt: skip
        self.index, self.uuid, self.name = index, uuid, name
        self.memory_total_mib, self.memory_used_mib = memory_total_mib, memory_used_mib
        self.processes = processes if processes is not None else []
        self.utilization_pct, self.temperature_c = utilization_pct, temperature_c

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "uuid": self.uuid, "name": self.name,
            "memory_total_mib": self.memory_total_mib, "memory_used_mib": self.memory_used_mib,
            "processes": [p.to_json() for p in self.processes],
            "utilization_pct": self.utilization_pct, "temperature_c": self.temperature_c,
        }  # fmt: skip


class GpuReport(_Record):
    def __init__(
        self, source: str,  # "nvml", "nvidia-smi" or "none"
        driver: str | None = None, cuda: str | None = None, gpus: list[Gpu] | None = None,
    ) -> None:  # fmt: skip
        self.source, self.driver, self.cuda = source, driver, cuda
        self.gpus = gpus if gpus is not None else []

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "driver": self.driver, "cuda": self.cuda,
                "gpus": [g.to_json() for g in self.gpus]}  # fmt: skip


def probe() -> GpuReport:
    """What GPUs this machine has and what runs on them, by XP_GPU_PROBE's method."""
    method = XP_GPU_PROBE.get()
    if method == "none":
        return GpuReport(source="none")
    if method == "auto" and not _driver_present() and not shutil.which("nvidia-smi"):
        return GpuReport(source="none")  # no NVIDIA driver: skip NVML's slow failure
    if method in ("auto", "nvml"):
        try:
            return probe_nvml()
        except GpuProbeError:
            if method == "nvml":
                raise
    if shutil.which("nvidia-smi"):
        return probe_nvidia_smi()
    if method == "nvidia-smi":
        raise GpuProbeError("XP_GPU_PROBE=nvidia-smi but nvidia-smi is not on PATH")
    return GpuReport(source="none")


def _driver_present() -> bool:
    if sys.platform != "linux":
        return True  # no cheap test elsewhere: let NVML decide
    return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")


def probe_nvml() -> GpuReport:
    pynvml = _nvml_init()
    try:
        return nvml_report(pynvml)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _nvml_init() -> Any:
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
    except Exception as e:  # the library raises its own types, or ImportError
        raise GpuProbeError(f"NVML is not available: {e}") from e
    return pynvml


def nvml_report(pynvml: Any) -> GpuReport:
    """The GPUs as an initialised NVML sees them."""
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda_int = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        report = GpuReport(
            source="nvml", driver=driver, cuda=f"{cuda_int // 1000}.{cuda_int % 1000 // 10}"
        )
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            report.gpus.append(
                Gpu(
                    index=index,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_total_mib=int(memory.total) // 2**20,
                    memory_used_mib=int(memory.used) // 2**20,
                    processes=[
                        GpuProcess(pid=p.pid, used_mib=int(p.usedGpuMemory or 0) // 2**20)
                        for p in procs
                    ],
                    utilization_pct=_optional(
                        lambda h=handle: pynvml.nvmlDeviceGetUtilizationRates(h).gpu, pynvml
                    ),
                    temperature_c=_optional(
                        lambda h=handle: pynvml.nvmlDeviceGetTemperature(
                            h, pynvml.NVML_TEMPERATURE_GPU
                        ),
                        pynvml,
                    ),
                )
            )
        return report
    except pynvml.NVMLError as e:
        raise GpuProbeError(f"NVML query failed: {e}") from e


def _optional(read: Any, pynvml: Any) -> int | None:
    """A reading some boards do not support (NVMLError_NotSupported): None."""
    try:
        return int(read())
    except pynvml.NVMLError:
        return None


class GpuMonitor:
    """This machine's GPUs, probed again and again (a worker's snapshot every few
    seconds): NVML initialised once and kept open; without NVML the probe's fallback
    (`nvidia-smi`, a process per look) at most every `slow_every` seconds."""

    def __init__(self, slow_every: float = 5.0) -> None:
        self.slow_every = slow_every
        self._nvml: Any = None
        self._tried = False
        self._last: tuple[float, GpuReport] | None = None

    def report(self) -> GpuReport:
        import time

        if not self._tried and XP_GPU_PROBE.get() in ("auto", "nvml") and _driver_present():
            self._tried = True
            try:
                self._nvml = _nvml_init()
            except GpuProbeError:
                self._nvml = None
        if self._nvml is not None:
            try:
                return nvml_report(self._nvml)
            except GpuProbeError:
                pass  # a GPU fell off the bus: say it through the fallback
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= self.slow_every:
            try:
                self._last = (now, probe())
            except GpuProbeError:
                self._last = (now, GpuReport(source="none"))
        return self._last[1]

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _smi(*args: str) -> str:
    try:
        proc = subprocess.run(
            ["nvidia-smi", *args], capture_output=True, text=True, timeout=SMI_TIMEOUT
        )
    except OSError as e:
        if e.errno == errno.ENOEXEC:  # a script without its #! line
            where = shutil.which("nvidia-smi") or "nvidia-smi"
            raise GpuProbeError(
                f"{where} cannot be executed (Exec format error): a script needs a first line "
                "like #!/bin/sh; `python -m xpkit.capture.fake_smi --install DIR` writes one"
            ) from e
        raise GpuProbeError(f"nvidia-smi failed: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise GpuProbeError(f"nvidia-smi failed: {e}") from e
    if proc.returncode != 0:
        raise GpuProbeError(f"nvidia-smi {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _csv_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]


def _maybe_int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def _int(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        return 0  # "[N/A]" on some boards


def probe_nvidia_smi() -> GpuReport:
    # The last two are optional: boards (and older fakes) may not answer them.
    fields = (
        "index,uuid,name,memory.total,memory.used,driver_version,utilization.gpu,temperature.gpu"
    )
    gpus_csv = _smi(f"--query-gpu={fields}", "--format=csv,noheader,nounits")
    apps_csv = _smi(
        "--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits"
    )
    header = _smi()
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    report = GpuReport(source="nvidia-smi", cuda=cuda.group(1) if cuda else None)
    by_uuid: dict[str, Gpu] = {}
    rows = _csv_rows(gpus_csv)
    if rows and not any(len(row) >= 6 and row[0].isdigit() for row in rows):
        raise GpuProbeError(f"nvidia-smi printed something unexpected: {gpus_csv[:200]!r}")
    for row in rows:
        if len(row) < 6 or not row[0].isdigit():
            continue
        gpu = Gpu(
            index=_int(row[0]),
            uuid=row[1],
            name=row[2],
            memory_total_mib=_int(row[3]),
            memory_used_mib=_int(row[4]),
            utilization_pct=_maybe_int(row[6]) if len(row) > 6 else None,
            temperature_c=_maybe_int(row[7]) if len(row) > 7 else None,
        )
        report.driver = row[5]
        report.gpus.append(gpu)
        by_uuid[gpu.uuid] = gpu
    for row in _csv_rows(apps_csv):
        if len(row) >= 3 and row[0] in by_uuid:
            by_uuid[row[0]].processes.append(GpuProcess(pid=_int(row[1]), used_mib=_int(row[2])))
    return report
