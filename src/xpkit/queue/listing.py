"""The queue as `xp queue` and the dashboard list it, through a cache on local disk.

Listing the queue reads one marker file per queued run (~30 µs each: 0.3 s for 10,000).
Every marker is written by a rename and removed by an unlink, and both change the queue
folder's modification time: while it is what it was, the queue is what it was. So the
last listing of each runs root is kept in XP_CACHE_DIR/queue/, keyed by the folder's
inode and mtime, and a warm `xp queue` reads one file and checks that each queued run's
folder still exists (a run trashed while queued leaves its marker). A listing is kept
only if the folder had not changed for TOML_CACHE_SETTLED seconds when it was made: two
changes within one tick of its timestamp could leave the same mtime. The files stay the
truth: a missing, unreadable or stale cache is a full listing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from xpkit.queue.files import QueuedRun, queue_dir, queued_runs
from xpkit.settings import TOML_CACHE_SETTLED, XP_CACHE_DIR
from xpkit.values import sha1


def listed_queue(runs_root: Path, *, tidy: bool = True) -> tuple[list[QueuedRun], list[str]]:
    """queued_runs (queue order, problems found), from the cache while it holds."""
    try:
        folder = queue_dir(runs_root).stat()
    except FileNotFoundError:
        return [], []
    key = [str(runs_root), folder.st_ino, folder.st_mtime_ns]
    cache = XP_CACHE_DIR.get() / "queue" / f"{sha1(str(runs_root).encode()).hexdigest()}.json"
    try:
        kept = json.loads(cache.read_bytes())
        if kept["key"] == key:
            queued = [QueuedRun(*row) for row in kept["queued"]]
            gone = [q.name for q in queued if not os.path.isdir(runs_root / q.name)]
            if not gone:
                return queued, []
    except (OSError, ValueError, KeyError, TypeError):
        pass
    queued, problems = queued_runs(runs_root, tidy=tidy)
    if folder.st_mtime_ns / 1e9 < time.time() - TOML_CACHE_SETTLED and not problems:
        _keep(cache, key, queued)
    return queued, problems


def _keep(cache: Path, key: list[object], queued: list[QueuedRun]) -> None:
    rows = [[q.name, q.priority, q.gpus, q.labels, q.submitted] for q in queued]
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"key": key, "queued": rows}), encoding="utf-8")
        os.replace(partial, cache)
    except OSError:
        partial.unlink(missing_ok=True)  # a read-only cache: listed in full next time
