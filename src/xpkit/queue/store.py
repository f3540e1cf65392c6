"""The queue in the runs root, as files: works on a local disk and on a mount shared
by several machines (NFS, sshfs). No server, no fcntl.

- `<runs>/.xp/queue/<run name>`: one marker per queued run (priority, GPUs, labels),
  so finding work is one small directory listing, not a scan of every run.
- `<run>/.claim`: created exclusively by the worker (or `xp cancel`) that takes a
  queued run; whoever creates it owns the run, nobody else does.
- `<run>/.cancel`: a request to stop a running run; its worker polls for it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import QueueError
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir, write_json_atomic


def queue_dir(runs_root: Path) -> Path:
    return runs_root / names.META_DIR / "queue"


@dataclass
class QueuedRun:
    name: str
    priority: int
    gpus: int
    labels: list[str]
    submitted: float
    extra: dict[str, Any] = field(default_factory=dict)


def enqueue(
    runs_root: Path, run_dir: RunDir, *, priority: int, gpus: int, labels: list[str]
) -> None:
    marker = {"priority": priority, "gpus": gpus, "labels": labels, "submitted": time.time()}
    folder = queue_dir(runs_root)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / run_dir.name, marker)


def queued_runs(
    runs_root: Path, cache: dict[str, dict[str, Any]] | None = None
) -> tuple[list[QueuedRun], list[str]]:
    """Queued runs in queue order (priority, then oldest), and problems found.
    `cache` keeps markers already read (they never change) between calls."""
    folder = queue_dir(runs_root)
    cache = {} if cache is None else cache
    try:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
    except FileNotFoundError:
        return [], []
    found, problems = [], []
    for entry in entries:
        marker = cache.get(entry.name)
        if marker is None:
            try:
                marker = cache[entry.name] = json.loads(Path(entry.path).read_text())
            except (OSError, ValueError):
                continue  # being written; next look
            if not (runs_root / entry.name).is_dir():
                cache.pop(entry.name, None)
                Path(entry.path).unlink(missing_ok=True)
                problems.append(
                    f"{entry.name}: its run directory was deleted while queued; dropped"
                )
                continue
        found.append(QueuedRun(entry.name, int(marker.get("priority", 0)),
                               int(marker.get("gpus", 0)), list(marker.get("labels", [])),
                               float(marker.get("submitted", 0))))  # fmt: skip
    found.sort(key=lambda q: (-q.priority, q.submitted, q.name))
    return found, problems


def unclaim(runs_root: Path, name: str, marker: QueuedRun) -> None:
    """Give a claimed run back to the queue (its resources vanished meanwhile)."""
    run_dir = RunDir(runs_root / name)
    enqueue(runs_root, run_dir, priority=marker.priority, gpus=marker.gpus, labels=marker.labels)
    run_dir.file(rd.CLAIM).unlink(missing_ok=True)


def claim(runs_root: Path, name: str, owner: str) -> bool:
    """Take a queued run. Exactly one caller, on any machine, gets True."""
    try:
        fd = os.open(runs_root / name / rd.CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except FileNotFoundError:
        (queue_dir(runs_root) / name).unlink(missing_ok=True)
        return False
    os.write(fd, f"{owner}\n".encode())
    os.close(fd)
    (queue_dir(runs_root) / name).unlink(missing_ok=True)
    return True


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def cancel(runs_root: Path, run_dir: RunDir) -> str:
    """Cancel a queued run, or ask the worker of a running one to stop it.
    Returns what happened, for the user."""
    info = run_dir.read_run()
    status = rd.status_of(run_dir, info)
    if status == "queued" and claim(runs_root, run_dir.name, f"cancel {worker_id()}"):
        run_dir.update_run(status="cancelled", ended=rd.now(), reason="cancelled while queued")
        return "cancelled"
    status = rd.status_of(run_dir, run_dir.read_run())
    if status in ("queued", "running"):
        if not info.get("worker"):
            raise QueueError(
                f"{run_dir.name} is running outside a worker (xp run); stop it with Ctrl-C"
            )
        run_dir.file(rd.CANCEL).write_text(f"{worker_id()} {time.time()}\n")
        return "stopping"
    raise QueueError(f"{run_dir.name} is {status}; only queued and running runs can be cancelled")
