"""The local backend: runs execute on this machine, one per free GPU (the free-GPU rule
of `allocate.py`), each in a thread that supervises its runner."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from xpkit.execute.prepared import execute_prepared, project_tree, record_failure
from xpkit.execute.runner import Runner
from xpkit.queue.allocate import GpuAllocator, GpuState
from xpkit.queue.envprep import EnvPreparer
from xpkit.queue.files import QueuedRun
from xpkit.queue.hostview import HostView
from xpkit.queue.scheduler import LATER, NEVER, NOW, Backend, Ended
from xpkit.settings import Settings
from xpkit.store.rundir import RunDir

GPU_PROBE_EVERY = 2.0  # seconds between GPU probes while runs wait for GPUs


@dataclass
class _Job:
    gpus: list[int]
    runner: Runner | None = None
    stop_asked: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalBackend(Backend):
    kind = "worker"

    def __init__(
        self, settings: Settings, *, gpus: list[int] | None = None, max_jobs: int | None = None
    ) -> None:
        self.settings = settings
        self.allocator = GpuAllocator(gpus)
        self.gpu_total = self.allocator.count()
        self.max_jobs = max_jobs or max(1, self.gpu_total)
        self.jobs: dict[str, _Job] = {}
        self.done: queue.Queue[Ended] = queue.Queue()
        self.states_cache: tuple[float, list[GpuState]] = (0.0, [])
        self.host = HostView(settings.runs)
        self.envs = EnvPreparer(settings, lambda text: print(f"xp worker: {text}", flush=True))

    def fits(self, item: QueuedRun) -> str:
        if item.gpus > self.gpu_total:
            return NEVER
        if self.envs.waiting(item.name):  # built while it waits, holding no GPU
            return LATER
        if len(self.jobs) >= self.max_jobs or (item.gpus and self._free_gpus() < item.gpus):
            return LATER
        return NOW

    def why_waiting(self, item: QueuedRun) -> str:
        building = self.envs.waiting(item.name)
        if building:
            return building
        if len(self.jobs) >= self.max_jobs:
            return f"all {self.max_jobs} run slot(s) of this worker are busy (--max-jobs)"
        busy = [f"GPU {s.index} {s.why}" for s in self._states() if not s.free]
        return f"needs {item.gpus} free GPU(s); " + "; ".join(busy)

    def why_never(self, item: QueuedRun) -> str:
        return f"needs {item.gpus} GPU(s), this worker has {self.gpu_total}"

    def _states(self) -> list[GpuState]:
        """The GPUs' states, probed at most every GPU_PROBE_EVERY seconds."""
        stamp, states = self.states_cache
        if time.monotonic() - stamp > GPU_PROBE_EVERY:
            states = self.allocator.states()
            self.states_cache = (time.monotonic(), states)
        return states

    def _free_gpus(self) -> int:
        return sum(1 for s in self._states() if s.free)

    def start(self, run_dir: RunDir, item: QueuedRun) -> bool:
        failure = self.envs.failure(item.name)
        if failure is not None:  # its environment cannot be built: it fails, taking no GPU
            self.envs.forget(item.name)
            record_failure(run_dir, failure)
            self.jobs[item.name] = _Job([])
            self.done.put(Ended(item.name, "failed", None))
            self.wake.set()
            return True
        gpus = self.allocator.take(item.gpus, item.name)
        self.states_cache = (0.0, [])
        if gpus is None:  # another worker of this machine took them meanwhile
            return False
        run_dir.update_run(gpus=gpus)
        job = self.jobs[item.name] = _Job(gpus)
        where = f"GPU {','.join(map(str, gpus))}" if gpus else "CPU"
        print(f"xp worker: started {item.name} on {where}", flush=True)

        def keep(runner: Runner) -> None:
            with job.lock:
                job.runner = runner
                if job.stop_asked:
                    runner.stop()

        def target() -> None:
            outcome = None
            try:
                user = f"job-{item.name}-{threading.get_ident()}"
                outcome = execute_prepared(
                    run_dir,
                    lambda: project_tree(self.settings, run_dir, user),
                    gpus=gpus,
                    on_runner=keep,
                )
            finally:
                self.allocator.release(gpus, item.name)
                status = outcome.status if outcome else "failed"
                self.done.put(Ended(item.name, status, outcome.exit_code if outcome else None))
                self.wake.set()

        threading.Thread(target=target, daemon=True, name=f"xp-{item.name}").start()
        return True

    def poll(self, timeout: float) -> list[Ended]:
        ended = []
        try:
            ended.append(self.done.get(timeout=timeout) if timeout > 0 else self.done.get_nowait())
            while True:
                ended.append(self.done.get_nowait())
        except queue.Empty:
            pass
        for item in ended:
            self.jobs.pop(item.name, None)
            self.envs.forget(item.name)
        return ended

    def stop(self, name: str) -> None:
        job = self.jobs.get(name)
        if job is None:
            return
        with job.lock:
            job.stop_asked = True
            if job.runner is not None:
                job.runner.stop()

    def describe(self) -> dict[str, Any]:
        running = {n: j.gpus for n, j in self.jobs.items()}
        return {
            "gpus": self.gpu_total,
            "max_jobs": self.max_jobs,
            "running": running,
            "host_view": self.host.snapshot(running),  # what `xp top` shows of this host
        }

    def close(self) -> None:
        self.host.monitor.close()
