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

MarkerCache = dict[str, tuple[tuple[int, int, int], dict[str, Any]]]  # name: (key, marker)


def queued_runs(
    runs_root: Path,
    cache: MarkerCache | None = None,
    *,
    tidy: bool = True,
) -> tuple[list[QueuedRun], list[str]]:
    """Queued runs in queue order (priority, then oldest), and problems found.
    `cache` keeps the markers read between calls, each by its file's inode, mtime and
    size: a marker written again (a run given another priority, or put back in the
    queue) is read again. `tidy`: drop the marker of a run deleted while queued (not
    for read-only views)."""
    folder = queue_dir(runs_root)
    cache = {} if cache is None else cache
    try:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
    except FileNotFoundError:
        return [], []
    found, problems = [], []
    present = {e.name for e in entries}
    for gone in set(cache) - present:
        del cache[gone]
    settled = time.time() - MARKER_SETTLED
    for entry in entries:
        try:
            st = entry.stat()
        except OSError:
            continue  # taken meanwhile
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        kept = cache.pop(entry.name, None)
        if kept is not None and kept[0] == seen:
            marker = kept[1]
        else:
            try:
                marker = json.loads(Path(entry.path).read_text())
            except (OSError, ValueError):
                continue  # being written; next look
            if not (runs_root / entry.name).is_dir():
                if tidy:
                    Path(entry.path).unlink(missing_ok=True)
                problems.append(dropped(entry.name))
                continue
        if st.st_mtime_ns / 1e9 < settled:
            cache[entry.name] = (seen, marker)
        found.append(queued_run(entry.name, marker))
    found.sort(key=queue_order)
    return found, problems


def queued_run(name: str, marker: dict[str, Any]) -> QueuedRun:
    return QueuedRun(name, int(marker.get("priority", 0)), int(marker.get("gpus", 0)),
                     list(marker.get("labels", [])), float(marker.get("submitted", 0)))  # fmt: skip


def queue_order(run: QueuedRun) -> tuple[int, float, str]:
    """Highest priority first, then the oldest."""
    return -run.priority, run.submitted, run.name


def dropped(name: str) -> str:
    return f"{name}: its run directory was deleted while queued; dropped"


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
