"""The one scheduler loop, the same for every backend (`xp worker`, `xp worker --ray`).

Policy lives here: queue order (priority, then age), labels, no overtaking unless
--backfill, claiming, the SIGTERM drain (first signal: take nothing more, checked
after every claim and before every start, a claimed run goes back untouched;
second: preempt running runs, which go back to the queue), --preempt (a queued run
of higher priority stops resumable runs of lower priority), registration and
heartbeat, recovery of what dead holders left (`recover.py`), the requeue policy.
A backend only says whether a run fits, starts it, reports which ended, stops one.
"""

from __future__ import annotations

import abc
import os
import signal
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpkit.errors import QueueError, XpError
from xpkit.execute.ending import stopped_by
from xpkit.execute.runner import REQUEUE_EXIT_CODE
from xpkit.hooks import events
from xpkit.hooks.outbox import start_background
from xpkit.queue import files
from xpkit.queue.recover import recover
from xpkit.queue.submit import requeue
from xpkit.settings import XP_HEARTBEAT_INTERVAL, XP_WORKER_POLL, Settings
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir, write_json_atomic

RECOVER_EVERY = 10.0  # seconds between recovery passes

NOW, LATER, NEVER = "now", "later", "never"


@dataclass
class Ended:
    """A run whose execution ended: its status, exit code, and why if it was lost."""

    name: str
    status: str
    exit_code: int | None = None
    lost: str | None = None  # the backend lost it (node died): the reason


class Backend(abc.ABC):
    """Where runs execute. Implements nothing that is policy."""

    kind = "worker"  # the holder kind of its claims
    # True: runs go by the worker's --label; False: the backend matches labels itself
    # (Ray: to the resources of the nodes that offer them).
    matches_labels = True
    # Set when the scheduler should look again: a run ended, the queue changed, a signal.
    wake: threading.Event

    def attach(self, wake: threading.Event) -> None:
        self.wake = wake

    def wait(self, timeout: float) -> None:
        """Return when a run ended or `wake` is set, or after `timeout` seconds."""
        self.wake.wait(timeout)

    @abc.abstractmethod
    def fits(self, item: files.QueuedRun) -> str:
        """NOW (resources free), LATER (busy) or NEVER (this backend cannot run it)."""

    @abc.abstractmethod
    def start(self, run_dir: RunDir, item: files.QueuedRun) -> bool:
        """Start the claimed run; False when its resources vanished meanwhile."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[Ended]:
        """The runs that ended, waiting up to `timeout` seconds for one."""

    @abc.abstractmethod
    def stop(self, name: str) -> None:
        """Stop a running run (its stop signal, then SIGKILL after the grace)."""

    def withdraw(self, name: str) -> bool:
        """Take back a started run whose program has not begun (a Ray task waiting for a
        node); True if it was withdrawn, untouched. Draining schedulers use it."""
        return False

    def describe(self) -> dict[str, Any]:
        """What the worker's registration shows about capacity and placement."""
        return {}

    def why_waiting(self, item: files.QueuedRun) -> str:
        """Why `item` waits (fits() said LATER), in words."""
        return "waiting for resources"

    def why_never(self, item: files.QueuedRun) -> str:
        """Why this backend can never run `item` (fits() said NEVER), in words."""
        return "this worker cannot run it"

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the backend holds; running runs have ended."""


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        *,
        labels: tuple[str, ...] = (),
        once: bool = False,
        backfill: bool = False,
        requeue_lost: bool = False,
        preempt: bool = False,
        name: str = "xp worker",
    ) -> None:
        self.settings = settings
        self.runs_root = settings.runs
        self.backend = backend
        self.labels = set(labels)
        self.once, self.backfill, self.requeue_lost = once, backfill, requeue_lost
        self.preempt = preempt
        self.name = name
        self.holder = files.me(backend.kind)
        self.id = self.holder.worker
        self.running: dict[str, files.QueuedRun] = {}
        self.preempted: set[str] = set()
        self.preempting: set[str] = set()  # stopping for a run of higher priority
        self.markers: files.MarkerCache = {}
        self.stops = 0
        self.announced = 0
        self.started = time.time()
        self.last_recover = 0.0
        self.log: list[str] = []
        self.said: dict[str, str] = {}
        self.wake = threading.Event()
        backend.attach(self.wake)

    # --- the loop -------------------------------------------------------------------
    def run(self) -> None:
        self._install_signals()
        hooks = events.usable_specs(self.settings)
        delivery = start_background(self.runs_root, hooks)
        poll = XP_WORKER_POLL.get()
        beat_every = min(XP_HEARTBEAT_INTERVAL.get(), 2.0)
        last_beat = 0.0
        watcher = _watch(files.queue_dir(self.runs_root), self.wake)
        try:
            self._register()
            while True:
                self.wake.clear()
                for ended in self.backend.poll(0):
                    self._ended(ended)
                self._act_on_intents()
                if time.monotonic() - self.last_recover > RECOVER_EVERY:
                    self._recover()
                if self.stops:
                    self._withdraw_waiting()
                waiting = 0 if self.stops else self._start_runnable()
                self._announce()
                if time.monotonic() - last_beat >= beat_every:
                    self._register()
                    last_beat = time.monotonic()
                if not self.running:
                    if self.stops:
                        break
                    if self.once and not waiting and self._nothing_left():
                        break
                self.backend.wait(poll)
        finally:
            if watcher is not None:
                watcher.stop()
            delivery.stop.set()
            self._stop_all()
            self.backend.close()
            self._worker_file().unlink(missing_ok=True)

    def _say(self, text: str) -> None:
        self.log.append(text)
        print(f"{self.name}: {text}", flush=True)

    def _nothing_left(self) -> bool:
        """--once: confirm, a moment later and after a recovery pass, that nothing queued
        can run here (a backend's view of its resources may lag behind); say what is
        left in the queue and why this worker cannot take it."""
        time.sleep(1.0)
        self._recover()
        if self._start_runnable() or self.running:
            return False
        queued, _ = files.queued_runs(self.runs_root, self.markers)
        for item in queued:
            if self.backend.matches_labels and not set(item.labels) <= self.labels:
                why = f"needs label {', '.join(sorted(set(item.labels) - self.labels))}"
            elif self.backend.fits(item) == NEVER:
                why = self.backend.why_never(item)
            else:
                continue
            self._say(f"left in the queue: {item.name} ({why})")
        return True

    def _say_once(self, key: str, text: str) -> None:
        """Say `text` unless it was the last thing said about `key` (a waiting run is
        explained when its reason changes, not at every look)."""
        if self.said.get(key) != text:
            self.said[key] = text
            self._say(text)

    def _recover(self) -> None:
        self.last_recover = time.monotonic()
        recover(self.settings, requeue_lost=self.requeue_lost, say=self._say)

    def _start_runnable(self) -> int:
        """Start what fits; returns how many queued runs this worker could ever take."""
        queued, problems = files.queued_runs(self.runs_root, self.markers)
        for problem in problems:
            warnings.warn(problem, stacklevel=2)
        able = 0
        for item in queued:
            if self.backend.matches_labels and not set(item.labels) <= self.labels:
                continue  # a local worker takes only runs with its labels
            verdict = self.backend.fits(item)
            if verdict == NEVER:
                continue
            able += 1
            if self.stops:
                break
            if verdict == LATER:
                self._say_once(item.name, f"{item.name} waits: {self.backend.why_waiting(item)}")
                if self.preempt and self._preempt_for(item):
                    break  # it starts when they have stopped; nothing overtakes it
                if self.backfill:
                    continue
                break  # the first in line waits for its resources; nothing overtakes it
            if not files.claim(self.runs_root, item.name, self.holder):
                continue
            if not self._start(item):
                break
        return able

    def _start(self, item: files.QueuedRun) -> bool:
        """Start a claimed run; False when nothing more should start in this pass."""
        run_dir = RunDir(self.runs_root / item.name)
        try:
            info = run_dir.read_run()
        except XpError as e:
            warnings.warn(f"{item.name}: cannot start: {e}", stacklevel=2)
            return True
        if info.get("status") != "queued":
            return True  # someone else ended it meanwhile (a cancel)
        if self.stops:  # a signal arrived after the claim: give it back untouched
            files.release(self.runs_root, run_dir, info)
            return False
        intent = files.cancel_intent(run_dir)
        if intent is not None and not intent.get("requeue"):
            status, why = stopped_by(intent)
            why = why if status == "pruned" else "cancelled while queued"
            run_dir.update_run(status=status, ended=rd.now(), reason=why)
            run_dir.file(rd.CANCEL).unlink(missing_ok=True)
            self._say(f"cancelled {item.name}")
            return True
        run_dir.update_run(worker=self.id, host=socket.gethostname())
        if self.stops or not self.backend.start(run_dir, item):
            info = run_dir.update_run(worker=None)
            files.release(self.runs_root, run_dir, info)
            return False
        self.running[item.name] = item
        return True

    def _ended(self, ended: Ended) -> None:
        self.running.pop(ended.name, None)
        run_dir = RunDir(self.runs_root / ended.name)
        intent = files.cancel_intent(run_dir)
        if intent is not None and ended.status == "killed" and not intent.get("requeue"):
            # A runner that could not see the intent (a Ray node) recorded `killed`.
            status, why = stopped_by(intent)
            run_dir.update_run(status=status, reason=why)
            ended.status = status
        if ended.lost:
            run_dir.update_run(status="lost", ended=rd.now(), reason=ended.lost)
            self._say(f"lost {ended.name}: {ended.lost}")
            events.run_event(self.settings, run_dir, "run.lost")
        else:
            self._say(f"{ended.status} {ended.name}")
        events.run_ended(self.settings, run_dir)
        info = run_dir.read_optional(rd.RUN_JSON, {}) or {}
        run_dir.file(rd.CANCEL).unlink(missing_ok=True)
        again = (
            (ended.name in self.preempted and ended.status in ("killed", "cancelled"))
            or (ended.lost is not None and self.requeue_lost)
            or (
                bool(info.get("resumable"))
                and (
                    ended.exit_code == REQUEUE_EXIT_CODE
                    or (intent is not None and bool(intent.get("requeue")))
                )
            )
        )
        if again:
            try:
                new = requeue(self.settings, run_dir)
                self._say(f"requeued {ended.name}" + ("" if new == ended.name else f" as {new}"))
            except QueueError as e:
                self._say(f"cannot requeue {ended.name}: {e}")

    def _act_on_intents(self) -> None:
        for name in list(self.running):
            if (self.runs_root / name / rd.CANCEL).exists():
                self.backend.stop(name)

    # --- stopping -----------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Only counts: the loop says so after its current pass, so every "started" it
        # prints comes before "stopping" and nothing starts after it.
        self.stops += 1
        self.wake.set()
        if self.stops >= 2:
            self._preempt_all()

    def _announce(self) -> None:
        if self.stops == self.announced:
            return
        self.announced = self.stops
        if self.stops == 1:
            self._say("stopping: no new runs; running ones finish (signal again to stop them)")
        else:
            self._say("stopping running runs; they go back to the queue")

    def _withdraw_waiting(self) -> None:
        """Draining: what the backend started but has not begun goes back to the queue."""
        for name in list(self.running):
            if self.backend.withdraw(name):
                del self.running[name]
                run_dir = RunDir(self.runs_root / name)
                files.release(self.runs_root, run_dir, run_dir.update_run(worker=None))
                self._say(f"{name}: back in the queue (it had not begun)")

    def _preempt_for(self, item: files.QueuedRun) -> bool:
        """--preempt: stop resumable runs of lower priority (lowest first, then the most
        recently started) whose GPUs make room for `item`; they go back to the queue as
        their next attempt. True while runs stop for it."""
        if self.preempting & self.running.keys():
            return True
        self.preempting.clear()
        candidates = []
        for name, running in self.running.items():
            if running.priority >= item.priority:
                continue
            info = RunDir(self.runs_root / name).read_optional(rd.RUN_JSON, {}) or {}
            if info.get("resumable"):
                started = -float(info.get("started") or 0)
                candidates.append((running.priority, started, name, running.gpus))
        victims, freed = [], 0
        for _priority, _started, name, gpus in sorted(candidates):
            victims.append(name)
            freed += gpus
            if freed >= item.gpus:
                break
        if not victims or freed < item.gpus:
            return False
        for name in victims:
            self._say(
                f"preempting {name} (priority {self.running[name].priority}) for "
                f"{item.name} (priority {item.priority})"
            )
            self.preempted.add(name)
            self.preempting.add(name)
            self.backend.stop(name)
        return True

    def _preempt_all(self) -> None:
        for name in list(self.running):
            self.preempted.add(name)
            self.backend.stop(name)

    def _stop_all(self) -> None:
        """Leaving with runs still running (an error in the loop): stop and reap them."""
        if not self.running:
            return
        self._preempt_all()
        deadline = time.monotonic() + 120
        while self.running and time.monotonic() < deadline:
            for ended in self.backend.poll(0.5):
                self._ended(ended)

    # --- registration ---------------------------------------------------------------------
    def _worker_file(self) -> Any:
        return files.workers_dir(self.runs_root) / f"{socket.gethostname()}_{os.getpid()}.json"

    def _register(self) -> None:
        folder = files.workers_dir(self.runs_root)
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "labels": sorted(self.labels),
            "running": {},
            "draining": bool(self.stops),
            "backend": self.backend.kind,
            **self.backend.describe(),
        }
        write_json_atomic(self._worker_file(), record)


def _watch(folder: Path, wake: threading.Event) -> Any:
    """Wake the loop as soon as a run is queued here (inotify; a shared mount's remote
    writes are not seen, the loop's poll finds those). None where watching fails."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                wake.set()

        folder.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(Handler(), str(folder), recursive=False)
        observer.daemon = True
        observer.start()
        return observer
    except Exception:  # no inotify (limits, platform): polling alone
        return None
