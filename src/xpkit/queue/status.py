"""What `xp queue` and `xp status` show: queued and running runs, live workers, and
why a queued run is not starting."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpkit.queue.files import QueuedRun, workers_dir
from xpkit.queue.listing import listed_queue
from xpkit.settings import XP_HEARTBEAT_TIMEOUT
from xpkit.store.index import RunRow, load_rows


@dataclass
class WorkerInfo:
    host: str
    pid: int
    labels: list[str]
    gpus: int
    max_jobs: int
    running: dict[str, list[int]]
    draining: bool
    age: float  # seconds since its last heartbeat
    nodes: list[dict[str, Any]]  # a Ray dispatcher's cluster nodes; empty for a local worker


def live_workers(runs_root: Path) -> list[WorkerInfo]:
    folder = workers_dir(runs_root)
    found = []
    timeout = XP_HEARTBEAT_TIMEOUT.get()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            age = time.time() - path.stat().st_mtime
            record: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if age > timeout:
            continue
        found.append(worker_info(record, age))
    return found


def worker_info(record: dict[str, Any], age: float) -> WorkerInfo:
    """A worker as its registration file says, `age` seconds after it was written."""
    return WorkerInfo(record.get("host", "?"), int(record.get("pid", 0)),
                      list(record.get("labels", [])), int(record.get("gpus", 0)),
                      int(record.get("max_jobs", 1)), dict(record.get("running", {})),
                      bool(record.get("draining")), age, list(record.get("nodes", [])))  # fmt: skip


def why_waiting(item: QueuedRun, workers: list[WorkerInfo]) -> str:
    if not workers:
        return "no worker is alive: start `xp worker`"
    able = [w for w in workers if set(item.labels) <= set(w.labels) and not w.draining]
    if not able:
        return (
            f"no live worker has label {', '.join(item.labels)}"
            if item.labels
            else ("every worker is stopping")
        )
    largest = max(w.gpus for w in able)
    if item.gpus > largest:
        return f"needs {item.gpus} GPUs; the largest live worker has {largest}"
    if item.gpus:
        return f"waiting for {item.gpus} free GPU{'s' if item.gpus > 1 else ''}"
    return "waiting for a free slot"


@dataclass
class QueueView:
    queued: list[tuple[QueuedRun, str]]  # with why it waits
    running: list[RunRow]
    workers: list[WorkerInfo]
    problems: list[str]


def queue_view(runs_root: Path, tidy: bool = True) -> QueueView:
    """`tidy` False (the dashboard): change nothing in the runs root."""
    queued, problems = listed_queue(runs_root, tidy=tidy)
    workers = live_workers(runs_root)
    rows, warnings = load_rows(runs_root, statuses=("running",))
    return QueueView([(q, why_waiting(q, workers)) for q in queued], rows, workers,
                     problems + warnings)  # fmt: skip
