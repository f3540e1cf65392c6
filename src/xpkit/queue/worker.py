"""`xp worker`: take queued runs and execute them, one per free GPU.

Highest priority first, then oldest. When the first run that fits this worker's
labels needs more GPUs than are free, nothing behind it starts (no overtaking)
unless --backfill. SIGTERM/Ctrl-C once: take nothing more, let running runs finish;
twice: stop them and put them back in the queue.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit.capture.env import capture_env
from xpkit.capture.git import fetch_bundle, repo_root, snapshot_exists
from xpkit.errors import GitError, RunError, XpError
from xpkit.execute.runner import Runner
from xpkit.execute.workspace import Workspace
from xpkit.hooks import events
from xpkit.hooks.outbox import start_background
from xpkit.names import META_DIR
from xpkit.queue.allocate import GpuAllocator
from xpkit.queue.local import bundle_path, repo_with_snapshot, requeue
from xpkit.queue.store import QueuedRun, claim, queued_runs, unclaim, worker_id
from xpkit.settings import XP_CACHE_DIR, XP_HEARTBEAT_INTERVAL, XP_WORKER_POLL, Settings
from xpkit.store import rundir as rd
from xpkit.store.index import load_rows
from xpkit.store.locks import exclusive_lock
from xpkit.store.rundir import RunDir, write_json_atomic

GPU_PROBE_EVERY = 2.0  # seconds between GPU probes while runs wait for GPUs
LOST_SCAN_EVERY = 10.0


def workers_dir(runs_root: Path) -> Path:
    return runs_root / META_DIR / "workers"


def _code_repo(settings: Settings, info: dict[str, Any]) -> Path:
    """A repository holding the run's snapshot: this project's, or a cache repo fed
    from the snapshot's bundle in the runs root (machines without the project)."""
    sha = info["snapshot"]
    try:
        project: Path | None = repo_root(settings.root)
    except GitError:
        project = None
    if project is not None and snapshot_exists(project, sha):
        return project
    digest = hashlib.sha1(str(settings.runs.resolve()).encode()).hexdigest()[:16]
    repos = XP_CACHE_DIR.get() / "repos"
    if project is None:
        return repo_with_snapshot(repos / f"{digest}.git", bundle_path(settings.runs, sha), sha)
    repos.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(repos / f"{digest}.fetch.lock"):  # a sweep's jobs start together
        if not snapshot_exists(project, sha):
            fetch_bundle(project, bundle_path(settings.runs, sha), sha)
    return project


def execute_job(
    settings: Settings, run_dir: RunDir, *, gpus: list[int], worker: str,
    on_runner: Any = None,
) -> str:  # fmt: skip
    """Execute one claimed run from its snapshot; returns its final status. Any failure
    is recorded in the run, never raised: one bad run must not stop a worker."""
    try:
        info = run_dir.update_run(worker=worker, gpus=gpus, host=socket.gethostname())
    except XpError as e:
        warnings.warn(f"{run_dir.name}: cannot start: {e}", stacklevel=2)
        return "failed"
    visible = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}  # "" hides every GPU
    user = f"job-{run_dir.name}-{os.getpid()}"
    workspace = tree = None
    try:
        # env.json describes where the run executes, not where it was submitted.
        env = capture_env()
        env.get("env", {}).get("variables", {}).update(visible)
        run_dir.write_json(rd.ENV_JSON, env)
        if info.get("snapshot"):
            repo = _code_repo(settings, info)
            workspace = Workspace(repo, settings.workdir, settings.link)
            tree = workspace.acquire(info["snapshot"], user)
            cwd = tree / (info.get("cwd") or ".")
            cwd = cwd if cwd.is_dir() else tree
        else:
            cwd = Path(info.get("project") or settings.root)
        runner = Runner(run_dir, cwd, echo=False)
        if on_runner:
            on_runner(runner)
        events.run_event(settings, run_dir, "run.started")
        return runner.execute(extra_env=visible).status
    except RunError:
        return "failed"  # the runner recorded why
    except Exception as e:  # bundle, workspace, disk: record it, keep the worker alive
        run_dir.update_run(status="failed", ended=rd.now(), reason=f"{type(e).__name__}: {e}")
        return "failed"
    finally:
        if workspace is not None and tree is not None:
            workspace.release(tree, user)
        events.run_ended(settings, run_dir)


@dataclass
class _Job:
    name: str
    gpus: list[int]
    thread: threading.Thread
    runner: Runner | None = None
    result: list[str] = field(default_factory=list)


class Worker:
    def __init__(
        self, settings: Settings, *, gpus: list[int] | None = None,
        max_jobs: int | None = None, labels: tuple[str, ...] = (), once: bool = False,
        backfill: bool = False, requeue_lost: bool = False,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.runs_root = settings.runs
        self.allocator = GpuAllocator(gpus)
        self.gpu_total = self.allocator.count()
        self.max_jobs = max_jobs or max(1, self.gpu_total)
        self.labels = set(labels)
        self.once, self.backfill, self.requeue_lost = once, backfill, requeue_lost
        self.id = worker_id()
        self.jobs: dict[str, _Job] = {}
        self.markers: dict[str, dict[str, Any]] = {}
        self.stops = 0
        self.started = time.time()
        self.free_cache: tuple[float, int] = (0.0, 0)
        self.last_lost_scan = 0.0
        self.log: list[str] = []

    # --- the loop -------------------------------------------------------------------
    def run(self) -> None:
        self._install_signals()
        stop_delivery = start_background(self.runs_root, events.specs_of(self.settings))
        poll = XP_WORKER_POLL.get()
        beat_every = min(XP_HEARTBEAT_INTERVAL.get(), 2.0)
        last_beat = 0.0
        try:
            while True:
                self._reap()
                self._check_cancels()
                if self.requeue_lost and time.monotonic() - self.last_lost_scan > LOST_SCAN_EVERY:
                    self._requeue_lost()
                waiting = 0 if self.stops else self._start_runnable()
                if time.monotonic() - last_beat >= beat_every:
                    self._register()
                    last_beat = time.monotonic()
                if not self.jobs and (self.stops or (self.once and not waiting)):
                    break
                time.sleep(poll)
        finally:
            stop_delivery.set()
            self._stop_all()
            (workers_dir(self.runs_root) / self._file_name()).unlink(missing_ok=True)

    def _say(self, text: str) -> None:
        self.log.append(text)
        print(f"xp worker: {text}", flush=True)

    def _start_runnable(self) -> int:
        """Start what fits; returns how many queued runs this worker could take."""
        queued, problems = queued_runs(self.runs_root, self.markers)
        for problem in problems:
            warnings.warn(problem, stacklevel=2)
        runnable = [q for q in queued if set(q.labels) <= self.labels and q.gpus <= self.gpu_total]
        for item in runnable:
            if len(self.jobs) >= self.max_jobs:
                break
            if item.gpus and self._free_gpus() < item.gpus:
                if self.backfill:
                    continue
                break  # the first in line waits for its GPUs; nothing overtakes it
            if not claim(self.runs_root, item.name, self.id):
                continue
            gpus = self.allocator.take(item.gpus, item.name)
            if gpus is None:  # another worker of this machine took them meanwhile
                unclaim(self.runs_root, item.name, item)
                self.free_cache = (0.0, 0)
                break
            self.free_cache = (0.0, 0)
            self._start(item, gpus)
        return len(runnable)

    def _free_gpus(self) -> int:
        stamp, free = self.free_cache
        if time.monotonic() - stamp > GPU_PROBE_EVERY:
            free = sum(1 for s in self.allocator.states() if s.free)
            self.free_cache = (time.monotonic(), free)
        return free

    def _start(self, item: QueuedRun, gpus: list[int]) -> None:
        run_dir = RunDir(self.runs_root / item.name)

        def keep(runner: Runner) -> None:
            job.runner = runner

        def target() -> None:
            try:
                status = execute_job(self.settings, run_dir, gpus=gpus, worker=self.id,
                                     on_runner=keep)  # fmt: skip
                job.result.append(status)
            finally:
                self.allocator.release(gpus, item.name)

        job = _Job(item.name, gpus, threading.Thread(target=target, daemon=True))
        self.jobs[item.name] = job
        where = f"GPU {','.join(map(str, gpus))}" if gpus else "CPU"
        self._say(f"started {item.name} on {where}")
        job.thread.start()

    def _reap(self) -> None:
        for name, job in list(self.jobs.items()):
            if not job.thread.is_alive():
                del self.jobs[name]
                status = job.result[0] if job.result else "failed"
                self._say(f"{status} {name}")
                if self.stops >= 2 and status == "killed":
                    new = requeue(self.settings, RunDir(self.runs_root / name))
                    self._say(f"requeued {name} as {new.name}")

    def _check_cancels(self) -> None:
        for name, job in self.jobs.items():
            if job.runner is not None and (self.runs_root / name / rd.CANCEL).exists():
                (self.runs_root / name / rd.CANCEL).unlink(missing_ok=True)
                self._say(f"cancelling {name}")
                job.runner.stop()

    def _requeue_lost(self) -> None:
        self.last_lost_scan = time.monotonic()
        rows, _ = load_rows(self.runs_root, statuses=("lost",))
        for row in rows:
            marker = self.runs_root / row.name / ".requeued"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except OSError:
                continue  # requeued once already, by this or another worker
            os.close(fd)
            events.run_event(self.settings, RunDir(self.runs_root / row.name), "run.lost")
            try:
                new = requeue(self.settings, RunDir(self.runs_root / row.name))
                self._say(f"requeued lost run {row.name} as {new.name}")
            except XpError as e:
                self._say(f"cannot requeue lost run {row.name}: {e}")

    # --- stopping -----------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stops += 1
        if self.stops == 1:
            self._say("stopping: no new runs; running ones finish (signal again to stop them)")
        else:
            self._say("stopping running runs; they go back to the queue")
            self._stop_all()

    def _stop_all(self) -> None:
        for job in self.jobs.values():
            if job.runner is not None:
                job.runner.stop()
        if self.stops >= 2 or threading.current_thread() is threading.main_thread():
            for job in list(self.jobs.values()):
                job.thread.join(timeout=60)
            self._reap()

    # --- registration ---------------------------------------------------------------------
    def _file_name(self) -> str:
        return f"{socket.gethostname()}_{os.getpid()}.json"

    def _register(self) -> None:
        folder = workers_dir(self.runs_root)
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
            "started": self.started, "labels": sorted(self.labels), "max_jobs": self.max_jobs,
            "gpus": self.gpu_total, "running": {n: j.gpus for n, j in self.jobs.items()},
            "draining": bool(self.stops),
        }  # fmt: skip
        write_json_atomic(folder / self._file_name(), record)
