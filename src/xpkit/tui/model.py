"""What `xp top` shows, read cheaply and kept between refreshes (no Textual here: the
plain `--once` view and the app share it).

Every refresh reads: the live workers' registrations (a small file each, parsed again
only when its mtime changed: GPUs per host come from there, written by each worker),
the queue markers (a directory listing; a marker is parsed once), and, for the runs on
screen, run.json when its mtime changed and metrics.jsonl from the byte offset already
read. No subprocess, no `nvidia-smi`, no full re-read of any log.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit.queue import files
from xpkit.queue.status import WorkerInfo, why_waiting, worker_info
from xpkit.settings import XP_GPU_FREE_MIB, XP_HEARTBEAT_TIMEOUT
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

SPARK_POINTS = 24  # values of the chosen metric kept per run, for its sparkline
RECENT = 30  # ended runs kept on screen
SPARKS = "▁▂▃▄▅▆▇█"


@dataclass
class GpuRow:
    host: str
    index: int
    name: str
    util: int | None
    mem_used: int
    mem_total: int
    temp: int | None
    holder: str  # "run NAME", "user pid command (MiB)", or "free"
    run: str | None = None  # the xp run holding it


@dataclass
class QueueRow:
    position: int
    name: str
    priority: int
    gpus: int
    labels: list[str]
    submitted: float
    why: str


@dataclass
class RunView:
    """A run on screen: run.json and the metrics read so far, kept between refreshes."""

    name: str
    info: dict[str, Any] = field(default_factory=dict)
    mtime: int = -1
    offset: int = 0
    size: int = -1  # metrics.jsonl's size at the last look
    stored: str = ""  # the status run.json holds (info's is the effective one)
    latest: dict[str, float] = field(default_factory=dict)
    series: dict[str, deque[float]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.info.get("status") or "?")

    def elapsed(self) -> float | None:
        started = self.info.get("started")
        if not isinstance(started, int | float):
            return None
        ended = self.info.get("ended")
        return (ended if isinstance(ended, int | float) else time.time()) - started

    def spark(self, metric: str) -> str:
        return sparkline(list(self.series.get(metric, ())))

    def refresh(self, runs_root: Path) -> None:
        folder = os.path.join(runs_root, self.name)
        try:
            mtime = os.stat(os.path.join(folder, rd.RUN_JSON)).st_mtime_ns
            if mtime != self.mtime or self.stored == "running":
                run_dir = RunDir(Path(folder))
                if mtime != self.mtime:
                    self.info, self.mtime = run_dir.read_run(), mtime
                    self.stored = str(self.info.get("status"))
                # a running run whose heartbeat stopped is lost
                self.info["status"] = rd.status_of(run_dir, {**self.info, "status": self.stored})
        except (OSError, rd.StoreError):
            return
        try:
            path = os.path.join(folder, rd.METRICS)
            size = os.stat(path).st_size
            if size == self.size:
                return  # nothing new
            self.size = size
            data, self.offset = rd.new_lines(path, self.offset)
        except OSError:
            return
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            for key, value in record.items():
                if key in ("step", "time") or isinstance(value, bool):
                    continue
                if isinstance(value, int | float):
                    self.latest[key] = float(value)
                    self.series.setdefault(key, deque(maxlen=SPARK_POINTS)).append(float(value))


def sparkline(values: list[float]) -> str:
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    scale = (len(SPARKS) - 1) / (high - low) if high > low else 0.0
    return "".join(SPARKS[int((v - low) * scale)] for v in finite)


class TopModel:
    def __init__(self, runs_root: Path, metric: str | None = None) -> None:
        self.runs_root = runs_root
        self.metric = metric  # the sparkline's metric; None: each run's first
        self.markers: files.MarkerCache = {}
        self.worker_files: dict[str, tuple[int, dict[str, Any]]] = {}
        self.runs: dict[str, RunView] = {}
        self.recent: list[str] = []  # ended runs, newest first
        self.workers: list[WorkerInfo] = []
        self.gpus: list[GpuRow] = []
        self.queue: list[QueueRow] = []
        self.problems: list[str] = []
        self.sweeps: dict[str, dict[str, Any]] = {}
        self._seed: list[str] | None = None  # recently ended runs, found in the background
        self.looks = 0
        self._queue_seen: tuple[int, list[files.QueuedRun]] | None = None
        self._queue_basis: tuple[int, list[Any]] | None = None
        self._seeder: threading.Thread | None = None

    # --- reading --------------------------------------------------------------------------
    def refresh(self, complete: bool = False) -> None:
        """Look again. `complete`: also wait for the first look at recently ended runs
        (the live screen shows them when they are found; `--once` waits)."""
        records = self._worker_records()
        self.workers = [worker_info(r, age) for r, age in records]
        self.gpus = [row for record, _ in records for row in _gpu_rows(record)]
        queued = self._queued()
        capacity = [(w.host, w.pid, tuple(w.labels), w.gpus, w.draining) for w in self.workers]
        if (id(queued), capacity) != self._queue_basis:  # the queue or the workers changed
            self._queue_basis = (id(queued), capacity)
            reasons: dict[tuple[int, tuple[str, ...]], str] = {}  # the same for the same needs
            self.queue = []
            for position, item in enumerate(queued, 1):
                needs = (item.gpus, tuple(item.labels))
                if needs not in reasons:
                    reasons[needs] = why_waiting(item, self.workers)
                row = QueueRow(position, item.name, item.priority, item.gpus, item.labels,
                               item.submitted, reasons[needs])  # fmt: skip
                self.queue.append(row)
        running = {name for r, _ in records for name in _running_names(r)}
        # Ended runs are looked for once the first screen is up (`complete`: at once).
        if complete or self.looks:
            self._seed_recent(running, wait=complete)
        self.looks += 1
        for name in running:
            self.runs.setdefault(name, RunView(name))
        for name in list(self.runs):
            view = self.runs[name]
            view.refresh(self.runs_root)
            ended = name not in running and view.status not in ("running", "queued")
            if ended and name not in self.recent:
                self.recent.insert(0, name)
        for name in self.recent[RECENT:]:
            self.runs.pop(name, None)
        del self.recent[RECENT:]
        self._group_sweeps()

    def _queued(self) -> list[files.QueuedRun]:
        """The queue in order; listed again only when its folder changed (a marker added,
        removed or rewritten)."""
        try:
            mtime = files.queue_dir(self.runs_root).stat().st_mtime_ns
        except OSError:
            mtime = -1
        if self._queue_seen is None or self._queue_seen[0] != mtime:
            queued, self.problems = files.queued_runs(self.runs_root, self.markers, tidy=False)
            self._queue_seen = (mtime, queued)
        return self._queue_seen[1]

    def _worker_records(self) -> list[tuple[dict[str, Any], float]]:
        folder = files.workers_dir(self.runs_root)
        timeout = XP_HEARTBEAT_TIMEOUT.get()
        found = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        seen = set()
        for entry in entries:
            if not entry.name.endswith(".json"):
                continue
            try:
                stat = entry.stat()
            except OSError:
                continue
            age = time.time() - stat.st_mtime
            if age > timeout:
                continue
            seen.add(entry.name)
            cached = self.worker_files.get(entry.name)
            if cached is None or cached[0] != stat.st_mtime_ns:
                try:
                    record = json.loads(Path(entry.path).read_text())
                except (OSError, ValueError):
                    continue
                cached = self.worker_files[entry.name] = (stat.st_mtime_ns, record)
            found.append((cached[1], age))
        for gone in set(self.worker_files) - seen:
            del self.worker_files[gone]
        return sorted(found, key=lambda r: (str(r[0].get("host")), int(r[0].get("pid") or 0)))

    def _seed_recent(self, running: set[str], wait: bool) -> None:
        """The runs that ended lately, from the run index, refreshed once in a thread so
        that the first screen does not wait for it."""
        if self._seeder is None:
            self._seeder = threading.Thread(target=self._find_recent, daemon=True)
            self._seeder.start()
        if wait:
            self._seeder.join()
        found, self._seed = self._seed, None
        for name in found or []:
            if name not in self.recent and name not in self.runs and name not in running:
                self.recent.append(name)
                self.runs[name] = RunView(name)

    def _find_recent(self) -> None:
        from xpkit.store.index import load_rows

        try:
            rows, _ = load_rows(self.runs_root, statuses=(*rd.ENDED, "lost"))
        except Exception:
            rows = []
        rows.sort(key=lambda r: r.ended or r.created or 0, reverse=True)
        self._seed = [row.name for row in rows[:RECENT]]

    def _group_sweeps(self) -> None:
        """The trials of each sweep on screen, with the best value so far."""
        sweeps: dict[str, dict[str, Any]] = {}
        for view in self.runs.values():
            search = view.info.get("search")
            if isinstance(search, dict) and search.get("study"):
                sweeps.setdefault(str(search["study"]), {"runs": []})["runs"].append(view.name)
        for study, entry in sweeps.items():
            metric, goal = self._search_of(study)
            entry["metric"], entry["goal"] = metric, goal
            values = [self.runs[n].latest.get(metric) for n in entry["runs"]
                      if metric and self.runs[n].status == "finished"]  # fmt: skip
            numbers = [v for v in values if v is not None]
            pick = min if goal == "minimize" else max
            entry["best"] = pick(numbers) if numbers else None
        self.sweeps = sweeps

    def _search_of(self, study: str) -> tuple[str | None, str]:
        """A sweep's metric and goal, from its experiment file (read once)."""
        cached = self.sweeps.get(study)
        if cached and "metric" in cached:
            return cached["metric"], cached["goal"]
        view = next((v for v in self.runs.values()
                     if (v.info.get("search") or {}).get("study") == study), None)  # fmt: skip
        file = ((view.info.get("experiment") or {}).get("file") if view else None) or ""
        root = Path(str(view.info.get("project") or "")) if view else Path()
        try:
            from xpkit.experiment import load_experiment

            search = load_experiment(root / file, root).search
        except Exception:
            search = None
        return (search.metric, search.goal) if search else (None, "minimize")

    # --- what the screens list ----------------------------------------------------------
    def run_rows(self, text: str = "", sort: str = "status") -> list[RunView]:
        rows = [v for v in self.runs.values() if text.lower() in v.name.lower()]
        order = {"running": 0, "queued": 1}
        if sort == "name":
            rows.sort(key=lambda v: v.name)
        elif sort == "elapsed":
            rows.sort(key=lambda v: -(v.elapsed() or 0))
        elif sort == "metric":
            rows.sort(
                key=lambda v: (
                    self.chosen(v) not in v.latest,
                    v.latest.get(self.chosen(v) or "", 0),
                )
            )
        else:
            rows.sort(key=lambda v: (order.get(v.status, 2), -(v.info.get("started") or 0)))
        return rows

    def chosen(self, view: RunView) -> str | None:
        """The metric of a run's sparkline: --metric, else its first metric."""
        if self.metric and self.metric in view.latest:
            return self.metric
        return next(iter(view.latest), None)


def _running_names(record: dict[str, Any]) -> list[str]:
    return list((record.get("running") or {}).keys())  # a Ray dispatcher's too


def _gpu_rows(record: dict[str, Any]) -> list[GpuRow]:
    host = str(record.get("host") or "?")
    rows = []
    view = record.get("host_view") or {}
    for gpu in view.get("gpus") or []:
        runs = list(gpu.get("runs") or [])
        foreign = [p for p in gpu.get("processes") or [] if not p.get("run")]
        parts = [f"run {r}" for r in runs]
        parts += [f"{p.get('user', '?')} pid {p.get('pid')} {p.get('command', '')} "
                  f"({p.get('mib', 0)} MiB)" for p in foreign]  # fmt: skip
        used = int(gpu.get("mem_used") or 0)
        if not parts and used >= XP_GPU_FREE_MIB.get():  # what the free-GPU rule sees too
            parts.append(f"{used} MiB used, no process visible from the worker")
        rows.append(GpuRow(host, int(gpu.get("index", 0)), str(gpu.get("name", "")),
                           gpu.get("util"), int(gpu.get("mem_used") or 0),
                           int(gpu.get("mem_total") or 0), gpu.get("temp"),
                           "; ".join(parts) or "free", runs[0] if runs else None))  # fmt: skip
    for node in record.get("nodes") or []:  # Ray: what the dispatcher knows of each node
        holders: dict[int, str] = {}
        for run, gpus in (node.get("running") or {}).items():
            for index in gpus if isinstance(gpus, list) else []:
                holders[int(index)] = str(run)
        for index in range(int(node.get("gpus") or 0)):
            run = holders.get(index)
            rows.append(GpuRow(f"node {node.get('ip')}", index, "(Ray node: no GPU readings)",
                               None, 0, 0, None, f"run {run}" if run else "free", run))  # fmt: skip
    return rows
