"""Snapshot pins: a submit or `xp run` in progress tells `xp gc --snapshots` which
snapshot it is about to give runs (between taking the snapshot and writing the run
directories that name it, no run records it yet). A pin names its process; a pin of
a dead process pins nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xpkit import names
from xpkit.store.locks import pid_alive
from xpkit.store.rundir import write_json_atomic


def pins_dir(runs_root: Path) -> Path:
    return runs_root / names.META_DIR / "pins"


class Pin:
    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, sha: str) -> None:
        data = json.loads(self.path.read_text())
        write_json_atomic(self.path, {**data, "sha": sha})


@contextmanager
def snapshot_pin(runs_root: Path) -> Iterator[Pin]:
    """Held from before the snapshot is taken until its runs exist."""
    folder = pins_dir(runs_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.uname().nodename}_{os.getpid()}_{os.urandom(3).hex()}.json"
    write_json_atomic(path, {"host": os.uname().nodename, "pid": os.getpid(), "sha": None})
    try:
        yield Pin(path)
    finally:
        path.unlink(missing_ok=True)


def pinned(runs_root: Path) -> tuple[set[str], bool]:
    """Snapshots pinned by live processes, and whether a live pin has no snapshot yet
    (one is being taken: nothing may be removed). Dead pins of this host are removed;
    another host's pins count as live."""
    shas: set[str] = set()
    pending = False
    folder = pins_dir(runs_root)
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            pending = True  # being written
            continue
        if data.get("host") == os.uname().nodename and not pid_alive(int(data.get("pid", 0))):
            path.unlink(missing_ok=True)
            continue
        if data.get("sha"):
            shas.add(str(data["sha"]))
        else:
            pending = True
    return shas, pending
