"""`xp backup DEST`: incremental, browsable snapshots of the runs root.

Each backup is a dated folder `DEST/<YYYY-mm-ddTHH-MM-SS>/` holding the runs root's
files; a file unchanged since the previous snapshot (same size and mtime) is a hard
link to it, so a second backup of an unchanged root costs seconds and no space.
`manifest.json` lists every file with its SHA-256 for `--verify`. A snapshot is
written under a hidden name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpkit.errors import StoreError
from xpkit.names import META_DIR
from xpkit.settings import XP_TOOL_TIMEOUT
from xpkit.store import rundir as rd
from xpkit.subprocs import rsync_args, run_tool

MANIFEST = "manifest.json"
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}$")
SKIP = {f"{META_DIR}/staging"}  # half-made runs: never worth keeping


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshots(dest: Path) -> list[Path]:
    if not dest.is_dir():
        return []
    return sorted(p for p in dest.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def _check_dest(runs_root: Path, dest: Path) -> None:
    try:
        dest.resolve().relative_to(runs_root.resolve())
    except ValueError:
        pass
    else:
        raise StoreError(f"backup destination {dest} is inside the runs root {runs_root}")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        probe = dest / f".xp-write-test-{os.getpid()}"
        probe.write_text("x")
        probe.unlink()
    except OSError as e:
        raise StoreError(f"backup destination {dest} is not writable: {e.strerror}") from None


@dataclass
class BackupResult:
    snapshot: Path
    files: int
    linked: int
    copied_bytes: int
    seconds: float


def backup(runs_root: Path, dest: Path) -> BackupResult:
    if not runs_root.is_dir():
        raise StoreError(f"runs root {runs_root} does not exist: nothing to back up")
    _check_dest(runs_root, dest)
    started = time.time()
    previous = snapshots(dest)[-1] if snapshots(dest) else None
    old: dict[str, Any] = json.loads((previous / MANIFEST).read_text()) if previous else {}
    name = time.strftime("%Y-%m-%dT%H-%M-%S")
    target = dest / name
    if target.exists():
        raise StoreError(f"a backup named {name} exists already; try again in a second")
    partial = dest / f".partial-{name}"
    manifest: dict[str, Any] = {}
    linked = copied = 0
    for rel, source in _files(runs_root):
        stat = source.stat()
        out = partial / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        before = old.get(rel)
        if (
            previous
            and before
            and before["size"] == stat.st_size
            and before["mtime_ns"] == stat.st_mtime_ns
        ):
            os.link(previous / rel, out)
            manifest[rel] = before
            linked += 1
        else:
            shutil.copy2(source, out)
            manifest[rel] = _entry(out, stat)
            copied += stat.st_size
    partial.mkdir(parents=True, exist_ok=True)
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    partial.rename(target)
    return BackupResult(target, len(manifest), linked, copied, time.time() - started)


def _files(runs_root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file a backup keeps."""
    for folder, dirs, files in os.walk(runs_root):
        rel_folder = Path(folder).relative_to(runs_root).as_posix()
        dirs[:] = [d for d in dirs if f"{rel_folder}/{d}".lstrip("./") not in SKIP]
        for file in files:
            if file == rd.SECRETS:  # a command's secret values stay on this machine
                continue
            path = Path(folder) / file
            yield path.relative_to(runs_root).as_posix(), path


def _entry(path: Path, stat: os.stat_result) -> dict[str, Any]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}


def _manifest(runs_root: Path) -> dict[str, Any]:
    return {rel: _entry(path, path.stat()) for rel, path in _files(runs_root)}


def backup_rsync(runs_root: Path, dest: str) -> BackupResult:
    """The same layout through rsync (for `host:path` over ssh): unchanged files are
    hard links to the previous snapshot (`--link-dest`), the manifest goes last, so a
    snapshot without one is incomplete and ignored."""
    rsync = shutil.which("rsync")
    if not rsync:
        raise StoreError("rsync is not installed: `apt-get install rsync` or `brew install rsync`")
    if ":" not in dest.split("/", 1)[0]:
        _check_dest(runs_root, Path(dest))
    started = time.time()
    limit = XP_TOOL_TIMEOUT.get()
    tool = rsync_args(rsync)
    listing = run_tool(
        [*tool, "--list-only", dest.rstrip("/") + "/"],
        timeout=limit,
        error=StoreError,
        what=f"rsync --list-only {dest}",
    )
    done = sorted(
        line.split()[-1]
        for line in listing.stdout.splitlines()
        if line.startswith("d") and _DATED.match(line.split()[-1])
    )
    name = time.strftime("%Y-%m-%dT%H-%M-%S")
    args = [*tool, "-a", f"--exclude=/{META_DIR}/staging/", f"--exclude={rd.SECRETS}"]
    if done:
        args.append(f"--link-dest=../{done[-1]}")
    base = dest.rstrip("/")
    copy = run_tool(
        [*args, f"{runs_root}/", f"{base}/{name}/"],
        timeout=limit,
        error=StoreError,
        what=f"rsync to {dest}",
    )
    if copy.returncode != 0:
        raise StoreError(f"rsync to {dest} failed: {copy.stderr.strip()[-300:]}")
    manifest = _manifest(runs_root)
    local = Path(tempfile.mkdtemp()) / MANIFEST
    local.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    last = run_tool(
        [*tool, str(local), f"{base}/{name}/{MANIFEST}"],
        timeout=limit,
        error=StoreError,
        what=f"rsync of the manifest to {dest}",
    )
    if last.returncode != 0:
        raise StoreError(f"rsync of the manifest to {dest} failed: {last.stderr.strip()[-300:]}")
    return BackupResult(Path(f"{base}/{name}"), len(manifest), -1, -1, time.time() - started)


def verify(snapshot: Path) -> list[str]:
    """Files whose content no longer matches the manifest (or that are missing)."""
    manifest = json.loads((snapshot / MANIFEST).read_text())
    bad = []
    for rel, meta in sorted(manifest.items()):
        path = snapshot / rel
        if not path.is_file():
            bad.append(f"{rel}: missing")
        elif _sha256(path) != meta["sha256"]:
            bad.append(f"{rel}: checksum differs")
    return bad


def restore(snapshot: Path, runs_root: Path, run: str | None = None) -> list[str]:
    """Copy runs back from a snapshot; an existing run directory is never overwritten."""
    names = (
        [run]
        if run
        else [p.name for p in snapshot.iterdir() if p.is_dir() and not p.name.startswith(".")]
    )
    for name in names:
        if not (snapshot / name).is_dir():
            raise StoreError(f"run {name} is not in backup {snapshot.name}")
        if (runs_root / name).exists():
            raise StoreError(f"cannot restore {name}: it exists in {runs_root} (xp rm it first)")
    for name in names:
        shutil.copytree(snapshot / name, runs_root / name)
    return names
