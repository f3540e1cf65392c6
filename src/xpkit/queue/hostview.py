"""What a worker says about its host in its registration, for `xp top`: each GPU with
utilisation, memory, temperature and who holds it — one of this worker's runs, or a
foreign process (user, pid, command, MiB) — so that `xp top` reads a file per worker
instead of running `nvidia-smi` on every host at every refresh.

Written with the worker's heartbeat (every 2 s at most); NVML stays open between looks
(capture/gpus.GpuMonitor). A process is named once (psutil: its user, its command with
secrets masked, its ancestors) and remembered while it lives.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xpkit.capture.gpus import GpuMonitor
from xpkit.redact import redact_argv
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

COMMAND_CHARS = 120


class HostView:
    def __init__(self, runs_root: Path) -> None:
        self.runs_root = runs_root
        self.monitor = GpuMonitor()
        self.owners: dict[tuple[int, float], dict[str, Any]] = {}  # (pid, start) -> who
        self.run_pids: dict[str, int] = {}  # run -> its program's pid

    def snapshot(self, running: dict[str, list[int]]) -> dict[str, Any]:
        """{"gpus": [...], "source": ..., "time": ...} for the registration."""
        report = self.monitor.report()
        holders: dict[int, list[str]] = {}
        for name, indices in running.items():
            for index in indices:
                holders.setdefault(index, []).append(name)
        pids = self._run_pids(running)
        gpus: list[dict[str, Any]] = []
        for gpu in report.gpus:
            gpus.append({
                "index": gpu.index, "name": gpu.name, "util": gpu.utilization_pct,
                "temp": gpu.temperature_c, "mem_used": gpu.memory_used_mib,
                "mem_total": gpu.memory_total_mib, "runs": holders.get(gpu.index, []),
                "processes": [{**self._who(p.pid, pids), "pid": p.pid, "mib": p.used_mib}
                              for p in gpu.processes],
            })  # fmt: skip
        return {"source": report.source, "time": time.time(), "gpus": gpus}

    def _run_pids(self, running: dict[str, list[int]]) -> dict[int, str]:
        """The program pid of each running run (run.json, read once it is known)."""
        for name in list(self.run_pids):
            if name not in running:
                del self.run_pids[name]
        for name in running:
            if name not in self.run_pids:
                info = RunDir(self.runs_root / name).read_optional(rd.RUN_JSON, {}) or {}
                if isinstance(info.get("pid"), int):
                    self.run_pids[name] = info["pid"]
        return {pid: name for name, pid in self.run_pids.items()}

    def _who(self, pid: int, runs: dict[int, str]) -> dict[str, Any]:
        """The run a GPU process belongs to (it or an ancestor is the run's program), or
        its user and command."""
        import psutil

        try:
            process = psutil.Process(pid)
            key = (pid, process.create_time())
        except psutil.Error:
            return {"user": "?", "command": "(not visible from this worker)"}
        if key not in self.owners:
            self.owners = {k: v for k, v in self.owners.items() if psutil.pid_exists(k[0])}
            self.owners[key] = _describe(process)
        owner = dict(self.owners[key])
        lineage = owner.pop("lineage")
        run = next((runs[p] for p in lineage if p in runs), None)
        if run is not None:
            owner["run"] = run
        return owner


def _describe(process: Any) -> dict[str, Any]:
    import psutil

    try:
        user = process.username()
    except (psutil.Error, KeyError):
        user = "?"
    try:
        argv = process.cmdline() or [process.name()]
    except psutil.Error:
        argv = ["?"]
    command = " ".join(redact_argv(argv))
    if len(command) > COMMAND_CHARS:
        command = command[: COMMAND_CHARS - 1] + "…"
    try:  # it and its ancestors: a run's program may start the process that holds the GPU
        lineage = [process.pid, *(p.pid for p in process.parents())]
    except psutil.Error:
        lineage = [process.pid]
    return {"user": user, "command": command, "lineage": lineage}
