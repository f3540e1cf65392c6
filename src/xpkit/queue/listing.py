"""The queue as `xp queue` and the dashboard list it, with the markers kept on local disk.

Listing the queue read one marker file per queued run (~30 µs each: 0.4 s for 10,000).
The markers read last time are kept in XP_CACHE_DIR/queue/, so that a listing stats each
marker instead of reading it (`queue.files.read_markers`: by inode, mtime and size).
The files stay the truth: a missing or broken cache is a full listing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from xpkit.queue.files import MarkerCache, QueuedRun, read_markers
from xpkit.settings import XP_CACHE_DIR
from xpkit.values import sha1


def listed_queue(runs_root: Path, *, tidy: bool = True) -> tuple[list[QueuedRun], list[str]]:
    """Queued runs in queue order, and problems found (see queue.files.queued_runs).
    `tidy`: drop the marker of a run deleted while queued (not for read-only views)."""
    cache = XP_CACHE_DIR.get() / "queue" / f"{sha1(str(runs_root).encode()).hexdigest()}.json"
    kept = _read(cache)
    queued, problems, keep = read_markers(runs_root, kept, tidy=tidy)
    if keep != kept:
        _write(cache, keep)
    return queued, problems


def _read(cache: Path) -> MarkerCache:
    try:
        kept = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _write(cache: Path, keep: MarkerCache) -> None:
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(keep), encoding="utf-8")
        os.replace(partial, cache)
    except OSError:
        partial.unlink(missing_ok=True)  # a read-only cache: markers are read next time
