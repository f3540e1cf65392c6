"""The queue as `xp queue` and the dashboard list it, with the markers kept on local disk.

Listing the queue read one marker file per queued run (~30 µs each: 0.4 s for 10,000).
The markers read last time are kept in XP_CACHE_DIR/queue/, each with the inode, mtime
and size of its file: every marker is written by a rename (a new inode) and removed by
an unlink, so a file with the same three is the same marker, and a listing stats each
marker instead of reading it. A marker changed within MARKER_SETTLED seconds is not
kept (two writes within one tick of its mtime could look like one). Each queued run's
folder is still statted: a run trashed while queued leaves its marker, which is dropped.
The files stay the truth: a missing or broken cache is a full listing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from xpkit.queue.files import (
    MARKER_SETTLED,
    QueuedRun,
    dropped,
    queue_dir,
    queue_order,
    queued_run,
)
from xpkit.settings import XP_CACHE_DIR
from xpkit.values import sha1

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def listed_queue(runs_root: Path, *, tidy: bool = True) -> tuple[list[QueuedRun], list[str]]:
    """Queued runs in queue order, and problems found (see queue.files.queued_runs).
    `tidy`: drop the marker of a run deleted while queued (not for read-only views)."""
    cache = XP_CACHE_DIR.get() / "queue" / f"{sha1(str(runs_root).encode()).hexdigest()}.json"
    try:
        entries = [e for e in os.scandir(queue_dir(runs_root)) if not e.name.startswith(".")]
    except FileNotFoundError:
        return [], []
    kept = _read(cache)
    settled = time.time() - MARKER_SETTLED
    keep: dict[str, list[Any]] = {}
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
                run = queued_run(entry.name, marker)
            except (OSError, ValueError, TypeError, AttributeError):
                continue  # being written; next look
            row = [seen, run.priority, run.gpus, run.labels, run.submitted]
        if not os.path.isdir(os.path.join(runs_root, entry.name)):
            if tidy:
                Path(entry.path).unlink(missing_ok=True)
            problems.append(dropped(entry.name))
            continue
        if st.st_mtime_ns / 1e9 < settled:
            keep[entry.name] = row
        queued.append(QueuedRun(entry.name, *row[1:]))
    queued.sort(key=queue_order)
    if keep != kept:
        _write(cache, keep)
    return queued, problems


def _read(cache: Path) -> dict[str, list[Any]]:
    try:
        kept = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _write(cache: Path, keep: dict[str, list[Any]]) -> None:
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(keep), encoding="utf-8")
        os.replace(partial, cache)
    except OSError:
        partial.unlink(missing_ok=True)  # a read-only cache: markers are read next time
