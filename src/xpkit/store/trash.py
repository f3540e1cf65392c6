"""`xp rm` moves runs into the runs root's trash (an atomic rename on the same
filesystem); `xp trash restore` puts them back; only `xp trash empty` deletes."""

from __future__ import annotations

import getpass
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from xpkit import names
from xpkit.errors import StoreError
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir, write_json_atomic

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise StoreError(f"age {text!r} is not a duration; write e.g. 30d, 12h, 90m, 45s, 2w")
    return float(match[1]) * _UNITS[match[2]]


def trash_dir(runs_root: Path) -> Path:
    return runs_root / names.META_DIR / "trash"


@dataclass
class Trashed:
    name: str
    trashed: float
    reason: str
    by: str


def move_to_trash(runs_root: Path, run_dir: RunDir, reason: str) -> None:
    info = run_dir.read_optional(rd.RUN_JSON, {}) or {}
    if rd.status_of(run_dir, info) == "running":
        raise StoreError(f"{run_dir.name} is running; stop it first (xp cancel, or Ctrl-C)")
    folder = trash_dir(runs_root)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / run_dir.name
    if target.exists():
        raise StoreError(f"{run_dir.name} is already in the trash; empty or restore it first")
    meta = {"trashed": time.time(), "reason": reason, "by": getpass.getuser()}
    write_json_atomic(folder / f"{run_dir.name}.trash.json", meta)
    run_dir.path.rename(target)  # atomic: the run is either here or there


def trashed(runs_root: Path) -> list[Trashed]:
    folder = trash_dir(runs_root)
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_dir():
            continue
        try:
            meta = json.loads((folder / f"{path.name}.trash.json").read_text())
        except (OSError, ValueError):
            meta = {"trashed": path.stat().st_mtime, "reason": "?", "by": "?"}
        found.append(
            Trashed(path.name, float(meta["trashed"]), str(meta["reason"]), str(meta["by"]))
        )
    return found


def restore(runs_root: Path, name: str) -> None:
    folder = trash_dir(runs_root)
    source = folder / name
    if not source.is_dir():
        matches = [t.name for t in trashed(runs_root) if t.name.startswith(name)]
        if len(matches) != 1:
            found = ", ".join(matches[:5]) or "none"
            raise StoreError(f"{name!r} matches {len(matches)} trashed runs ({found}); "
                             "`xp trash ls` lists them")  # fmt: skip
        source = folder / matches[0]
    target = runs_root / source.name
    if target.exists():
        raise StoreError(f"cannot restore {source.name}: a run of that name exists in {runs_root}")
    source.rename(target)
    (folder / f"{source.name}.trash.json").unlink(missing_ok=True)


def empty(runs_root: Path, older_than: float | None = None) -> list[str]:
    """Delete trashed runs for good (those trashed more than `older_than` s ago)."""
    removed = []
    for item in trashed(runs_root):
        if older_than is not None and time.time() - item.trashed < older_than:
            continue
        folder = trash_dir(runs_root)
        shutil.rmtree(folder / item.name)
        (folder / f"{item.name}.trash.json").unlink(missing_ok=True)
        removed.append(item.name)
    return removed
