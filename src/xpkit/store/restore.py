"""`xp backup DEST --restore`: runs copied back from a backup snapshot, verified as they
are copied, into a hidden staging folder first and renamed into place only when every
run is complete and checked, so a killed restore leaves nothing that lists as a run
(the next restore clears what it left). Files whose checksum differs are refused
unless `force`; a restored run that clashes with a run of the same experiment and
trial here (restored beside newer runs) gets the next free trial.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import StoreError
from xpkit.store import rundir as rd
from xpkit.store.backup import MANIFEST, check_file
from xpkit.store.locks import create_exclusive, exclusive_lock
from xpkit.store.trash import trash_dir

RESTORED = "restored.json"  # in each restored run: from where, when, what was wrong


@dataclass
class Restored:
    name: str  # as it is now in the runs root
    original: str  # as it was in the backup
    bad_files: list[str] = field(default_factory=list)


def restore(
    snapshot: Path, runs_root: Path, run: str | None = None, force: bool = False
) -> list[Restored]:
    manifest: dict[str, Any] = json.loads((snapshot / MANIFEST).read_text())
    wanted = [run] if run else sorted({rel.split("/", 1)[0] for rel in manifest} - {MANIFEST})
    wanted = [n for n in wanted if not n.startswith(".")]
    for name in wanted:
        if not (snapshot / name).is_dir():
            raise StoreError(f"run {name} is not in backup {snapshot.name}")
        here = runs_root / name
        if here.exists() and _run_id(here) in (None, _run_id(snapshot / name)):
            raise StoreError(f"cannot restore {name}: it exists in {runs_root} (xp rm it first)")
    staging = runs_root / names.META_DIR / "restoring"
    staging.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(staging / ".lock"):
        for stale in staging.iterdir():  # what a killed restore left
            if stale.name != ".lock":
                shutil.rmtree(stale, ignore_errors=True)
        staged = [_stage(snapshot, manifest, name, staging) for name in wanted]
        bad = [f"{r.original}/{line}" for r in staged for line in r.bad_files]
        if bad and not force:
            for r in staged:
                shutil.rmtree(staging / r.original, ignore_errors=True)
            shown = "; ".join(bad[:10]) + (f"; … {len(bad) - 10} more" if len(bad) > 10 else "")
            raise StoreError(
                f"backup {snapshot.name} has {len(bad)} bad file(s): {shown}. Nothing was "
                "restored; --force restores them anyway (marked in each run's restored.json)"
            )
        return [_place(snapshot, staging, runs_root, r) for r in staged]


def _stage(snapshot: Path, manifest: dict[str, Any], name: str, staging: Path) -> Restored:
    """Copy one run into staging, checking every file against the manifest."""
    target = staging / name
    shutil.copytree(snapshot / name, target, symlinks=True)
    prefix = f"{name}/"
    result = Restored(name, name)
    for rel, meta in sorted(manifest.items()):
        if rel.startswith(prefix):
            problem = check_file(target / rel[len(prefix) :], meta)
            if problem:
                result.bad_files.append(f"{rel[len(prefix) :]}: {problem}")
    return result


def _place(snapshot: Path, staging: Path, runs_root: Path, staged: Restored) -> Restored:
    run_dir = rd.RunDir(staging / staged.original)
    parsed = names.parse_run_name(staged.original)
    if parsed is not None and _taken(runs_root, parsed.expid, parsed.trial, _run_id(run_dir.path)):
        trial = names.allocate_trial(runs_root, parsed.expid)
        staged.name = names.run_name(parsed.expid, trial, parsed.slug)
        try:
            run_dir.update_run(name=staged.name, trial=trial)
        except (StoreError, OSError):
            pass  # a bad run.json: restored as it is, its folder renamed
    elif parsed is not None:
        _claim_trial(runs_root, parsed.expid, parsed.trial)
    rd.write_json_atomic(
        run_dir.file(RESTORED),
        {"from": str(snapshot), "time": time.time(), "name_in_backup": staged.original,
         "bad_files": staged.bad_files},
    )  # fmt: skip
    final = runs_root / staged.name
    if final.exists():
        raise StoreError(f"cannot restore {staged.name}: it appeared in {runs_root} meanwhile")
    os.rename(run_dir.path, final)
    return staged


def _taken(runs_root: Path, expid: str, trial: int, run_id: str | None) -> bool:
    """Whether another run of this experiment and trial is here or in the trash (the
    same run, by its ID, in the trash is not another one)."""
    prefix = names.run_name(expid, trial, "")
    for folder in (runs_root, trash_dir(runs_root)):
        try:
            entries = [e for e in os.scandir(folder) if e.is_dir() and e.name.startswith(prefix)]
        except FileNotFoundError:
            continue
        if any(run_id is None or _run_id(Path(e.path)) != run_id for e in entries):
            return True
    return False


def _run_id(run: Path) -> str | None:
    info = rd.RunDir(run).read_optional(rd.RUN_JSON, {}) or {}
    return str(info["id"]) if isinstance(info, dict) and info.get("id") else None


def _claim_trial(runs_root: Path, expid: str, trial: int) -> None:
    """Record the restored run's trial, so that no new run takes it."""
    claims = runs_root / names.META_DIR / "trials" / expid
    claims.mkdir(parents=True, exist_ok=True)
    create_exclusive(claims / f"{trial:03d}")
