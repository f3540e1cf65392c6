"""The free-GPU rule, shared by every worker of one machine.

A GPU is free when the probe (NVML or nvidia-smi) shows no compute process on it and
less than XP_GPU_FREE_MIB of memory used, no worker of this machine holds it for a
running job, and none handed it out in the last XP_GPU_GRACE seconds (a job needs a
moment to allocate memory before the probe sees it). The machine-wide state is a
folder of small files on local disk, changed under one exclusive-create lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from xpkit.capture.gpus import Gpu, GpuProbeError, probe
from xpkit.settings import XP_CACHE_DIR, XP_GPU_FREE_MIB, XP_GPU_GRACE
from xpkit.store.locks import exclusive_lock, pid_alive


@dataclass
class GpuState:
    index: int
    name: str
    memory_used_mib: int
    memory_total_mib: int
    foreign_pids: list[int]
    held_by: str | None  # run name of this machine's job on it
    free: bool
    why: str  # why it is not free ("" when free)


class GpuAllocator:
    def __init__(self, only: list[int] | None = None, state: Path | None = None) -> None:
        self.only = only
        self.state = state or XP_CACHE_DIR.get() / "gpus" / socket.gethostname()
        self.state.mkdir(parents=True, exist_ok=True)
        self.free_mib = XP_GPU_FREE_MIB.get()
        self.grace = XP_GPU_GRACE.get()
        self.warned = False

    def _probe(self) -> list[Gpu]:
        try:
            gpus = probe().gpus
        except GpuProbeError as e:
            if not self.warned:
                warnings.warn(f"GPU probe failed, running CPU-only: {e}", stacklevel=2)
                self.warned = True
            return []
        return [g for g in gpus if self.only is None or g.index in self.only]

    def _held(self, index: int) -> str | None:
        path = self.state / f"held-{index}"
        try:
            hold = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not pid_alive(int(hold.get("pid", 0))):
            path.unlink(missing_ok=True)  # its worker died: the hold goes with it
            return None
        return str(hold.get("run"))

    def _handed_recently(self, index: int) -> bool:
        try:
            age = time.time() - (self.state / f"handed-{index}").stat().st_mtime
        except OSError:
            return False
        return age < self.grace

    def states(self) -> list[GpuState]:
        result = []
        for gpu in self._probe():
            held = self._held(gpu.index)
            foreign = [p.pid for p in gpu.processes]
            if held:
                why = f"held by {held}"
            elif foreign:
                why = f"process {', '.join(map(str, foreign))} on it"
            elif gpu.memory_used_mib >= self.free_mib:
                why = f"{gpu.memory_used_mib} MiB used"
            elif self._handed_recently(gpu.index):
                why = f"just handed out (free again {self.grace:.0f} s after: XP_GPU_GRACE)"
            else:
                why = ""
            result.append(GpuState(gpu.index, gpu.name, gpu.memory_used_mib,
                                   gpu.memory_total_mib, foreign, held, not why, why))  # fmt: skip
        return result

    def count(self) -> int:
        return len(self._probe())

    def take(self, count: int, run: str) -> list[int] | None:
        """`count` free GPUs held for `run`, or None if not that many are free."""
        if count == 0:
            return []
        with exclusive_lock(self.state / ".lock"):
            free = [s.index for s in self.states() if s.free]
            if len(free) < count:
                return None
            chosen = free[:count]
            for index in chosen:
                hold = {"run": run, "pid": os.getpid(), "time": time.time()}
                (self.state / f"held-{index}").write_text(json.dumps(hold))
                (self.state / f"handed-{index}").touch()
                os.utime(self.state / f"handed-{index}")
            return chosen

    def release(self, indices: list[int], run: str) -> None:
        with exclusive_lock(self.state / ".lock"):
            for index in indices:
                path = self.state / f"held-{index}"
                try:
                    if json.loads(path.read_text()).get("run") == run:
                        path.unlink()
                except (OSError, ValueError):
                    continue
