"""The queue in the runs root, as files: works on a local disk and on a mount shared
by several machines (NFS, sshfs). No server, no fcntl.

- `<runs>/.xp/queue/<run name>`: one marker per queued run (priority, GPUs, labels),
  so finding work is one small directory listing, not a scan of every run.
- `<run>/.claim` (`store/claims.py`): who holds the run and is its only writer of
  run.json: the submitter until the run is queued, then the worker (or `xp cancel`)
  that takes it.
- `<run>/.cancel`: an intent, `{"requeue": bool}`: the holder stops the run (and, for
  a resumable run with requeue, puts it back as its next attempt).
- `<runs>/.xp/workers/<host>_<pid>.json`: each scheduler's registration, rewritten
  every few seconds: its heartbeat, for holders on other machines.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.store import rundir as rd
from xpkit.store.claims import (  # noqa: F401 - the queue's view of claims
    Holder,
    create_claim,
    holder_alive,
    me,
    read_claim,
    workers_dir,
)
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


def enqueue_from_run(runs_root: Path, run_dir: RunDir, info: dict[str, Any]) -> None:
    """The marker of a queued run, from what its run.json says."""
    enqueue(
        runs_root,
        run_dir,
        priority=int(info.get("priority") or 0),
        gpus=int(info.get("gpus_requested") or 0),
        labels=list(info.get("labels") or []),
    )


# A marker is written by a rename (a new inode) and removed by an unlink, so a file with
# the same inode, mtime and size is the same marker; one written within this many seconds
# is read again at every look (an unlink and a rewrite within one tick of the mtime clock
# could reuse the inode and keep all three).
MARKER_SETTLED = 2.0

# The markers kept between looks, as JSON can hold them (`xp queue` keeps them on disk):
# name -> [[inode, mtime_ns, size], priority, gpus, labels, submitted].
MarkerCache = dict[str, list[Any]]


def queued_runs(
    runs_root: Path, cache: MarkerCache | None = None, *, tidy: bool = True
) -> tuple[list[QueuedRun], list[str]]:
    """Queued runs in queue order (priority, then oldest), and problems found.
    `cache` keeps the markers read between calls (see `read_markers`); a marker written
    again (a run given another priority, or put back in the queue) is read again.
    `tidy`: drop the marker of a run deleted while queued (not for read-only views)."""
    queued, problems, keep = read_markers(runs_root, cache or {}, tidy=tidy)
    if cache is not None:
        cache.clear()
        cache.update(keep)
    return queued, problems


def read_markers(
    runs_root: Path, kept: MarkerCache, *, tidy: bool
) -> tuple[list[QueuedRun], list[str], MarkerCache]:
    """One look at the queue: each marker statted, read only when it is not the one in
    `kept`; each queued run's folder statted (a run trashed while queued leaves its
    marker, which is dropped). Returns the queue, problems, and the markers to keep."""
    try:
        entries = [e for e in os.scandir(queue_dir(runs_root)) if not e.name.startswith(".")]
    except FileNotFoundError:
        return [], [], {}
    settled = time.time() - MARKER_SETTLED
    keep: MarkerCache = {}
    queued, problems = [], []
    for entry in entries:
        try:
            st = entry.stat()
        except OSError:
            continue  # taken meanwhile
        seen = [st.st_ino, st.st_mtime_ns, st.st_size]
        row = kept.get(entry.name)
        if not (isinstance(row, list) and len(row) == 5 and row[0] == seen):
            try:
                with open(entry.path, "rb") as f:
                    marker = json.loads(f.read())
                get = marker.get
                row = [seen, int(get("priority", 0)), int(get("gpus", 0)),
                       list(get("labels", [])), float(get("submitted", 0))]  # fmt: skip
            except (OSError, ValueError, TypeError, AttributeError):
                continue  # being written; next look
        if not os.path.isdir(os.path.join(runs_root, entry.name)):
            if tidy:
                Path(entry.path).unlink(missing_ok=True)
            problems.append(f"{entry.name}: its run directory was deleted while queued; dropped")
            continue
        if st.st_mtime_ns / 1e9 < settled:
            keep[entry.name] = row
        queued.append(QueuedRun(entry.name, *row[1:]))
    queued.sort(key=lambda q: (-q.priority, q.submitted, q.name))  # highest, then oldest
    return queued, problems, keep


def claim(runs_root: Path, name: str, holder: Holder) -> bool:
    """Take a queued run. Exactly one caller, on any machine, gets True."""
    run_dir = RunDir(runs_root / name)
    if not create_claim(run_dir, holder):
        if not run_dir.path.is_dir():
            (queue_dir(runs_root) / name).unlink(missing_ok=True)
        return False
    (queue_dir(runs_root) / name).unlink(missing_ok=True)
    return True


def release(runs_root: Path, run_dir: RunDir, info: dict[str, Any] | None = None) -> None:
    """Give a claimed, not started run back to the queue: marker first, then the claim
    goes (a crash in between leaves a dead claim that recovery takes back)."""
    enqueue_from_run(runs_root, run_dir, info if info is not None else run_dir.read_run())
    run_dir.file(rd.CLAIM).unlink(missing_ok=True)


def cancel_intent(run_dir: RunDir) -> dict[str, Any] | None:
    try:
        data = json.loads(run_dir.file(rd.CANCEL).read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cancel_intent(run_dir: RunDir, *, requeue: bool, prune: str | None = None) -> None:
    """`prune`: a sweep's pruner stops the run, for this reason (recorded `pruned`)."""
    intent = {"requeue": requeue, "time": time.time(), "by": me("cancel").worker,
              "user": getpass.getuser()}  # fmt: skip
    if prune is not None:
        intent.update(prune=True, reason=prune)
    write_json_atomic(run_dir.file(rd.CANCEL), intent)
