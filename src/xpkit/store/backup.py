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
from stat import S_ISLNK, S_ISREG
from typing import Any

from xpkit.errors import StoreError
from xpkit.names import META_DIR
from xpkit.settings import XP_TOOL_TIMEOUT
from xpkit.store import rundir as rd
from xpkit.store.locks import exclusive_lock
from xpkit.subprocs import rsync_args, run_tool
from xpkit.values import is_remote

MANIFEST = "manifest.json"
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(-\d+)?$")
SKIP = {f"{META_DIR}/staging", f"{META_DIR}/restoring"}  # half-made runs: never worth keeping
LOCK_WAIT = 3600.0  # seconds a backup waits for another one into the same DEST


def sha256(path: Path) -> str:
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
    with exclusive_lock(dest / ".xp-backup.lock", timeout=LOCK_WAIT):
        for stale in dest.glob(".partial-*"):  # a backup killed midway: nothing to keep
            shutil.rmtree(stale, ignore_errors=True)
        return _backup(runs_root, dest)


def _backup(runs_root: Path, dest: Path) -> BackupResult:
    started = time.time()
    previous = snapshots(dest)[-1] if snapshots(dest) else None
    old: dict[str, Any] = json.loads((previous / MANIFEST).read_text()) if previous else {}
    name = _fresh_name(time.strftime("%Y-%m-%dT%H-%M-%S"), {p.name for p in dest.iterdir()})
    target = dest / name
    partial = dest / f".partial-{name}"
    manifest: dict[str, Any] = {}
    linked = copied = 0
    for rel, source in _files(runs_root):
        try:
            stat = source.lstat()
        except FileNotFoundError:
            continue  # gone meanwhile: a worker renamed a temporary file into place
        out = partial / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if S_ISLNK(stat.st_mode):  # copied as a link, never followed out of the runs root
            manifest[rel] = {"link": os.readlink(source)}
            os.symlink(manifest[rel]["link"], out)
            continue
        if not S_ISREG(stat.st_mode):
            continue  # a socket or fifo: nothing to keep
        before = old.get(rel)
        if (
            previous
            and before
            and before.get("size") == stat.st_size
            and before.get("mtime_ns") == stat.st_mtime_ns
            and (previous / rel).is_file()
        ):
            os.link(previous / rel, out)
            manifest[rel] = before
            linked += 1
            continue
        try:
            shutil.copy2(source, out, follow_symlinks=False)
        except FileNotFoundError:
            continue
        manifest[rel] = _entry(out, stat)
        copied += stat.st_size
    partial.mkdir(parents=True, exist_ok=True)
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    partial.rename(target)
    return BackupResult(target, len(manifest), linked, copied, time.time() - started)


def _fresh_name(stamp: str, taken: set[str]) -> str:
    """The snapshot's name: its time, with `-2`, `-3`… when a backup of this second
    exists (names sort in the order the backups were made)."""
    name, number = stamp, 1
    while name in taken:
        number += 1
        name = f"{stamp}-{number}"
    return name


def _files(runs_root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file and symlink a backup keeps; a folder that
    vanishes during the walk is skipped, a symlinked folder is kept as a link."""
    for folder, dirs, files in os.walk(runs_root):
        rel_folder = Path(folder).relative_to(runs_root).as_posix()
        dirs[:] = [d for d in dirs if f"{rel_folder}/{d}".lstrip("./") not in SKIP]
        linked = [d for d in dirs if (Path(folder) / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in linked]
        for file in [*files, *linked]:
            if file == rd.SECRETS:  # a command's secret values stay on this machine
                continue
            path = Path(folder) / file
            yield path.relative_to(runs_root).as_posix(), path


def _entry(path: Path, stat: os.stat_result) -> dict[str, Any]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(path)}


def _manifest(runs_root: Path) -> dict[str, Any]:
    manifest = {}
    for rel, path in _files(runs_root):
        try:
            stat = path.lstat()
            if S_ISLNK(stat.st_mode):
                manifest[rel] = {"link": os.readlink(path)}
            elif S_ISREG(stat.st_mode):
                manifest[rel] = _entry(path, stat)
        except FileNotFoundError:
            continue
    return manifest


def backup_rsync(runs_root: Path, dest: str) -> BackupResult:
    """The same layout through rsync (for `host:path` over ssh): unchanged files are
    hard links to the previous snapshot (`--link-dest`), the manifest goes last, so a
    snapshot without one is incomplete and ignored."""
    rsync = shutil.which("rsync")
    if not rsync:
        raise StoreError("rsync is not installed: `apt-get install rsync` or `brew install rsync`")
    if not is_remote(dest):
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
    name = _fresh_name(time.strftime("%Y-%m-%dT%H-%M-%S"), set(done))
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
    return [f"{rel}: {problem}" for rel, meta in sorted(manifest.items())
            if (problem := check_file(snapshot / rel, meta))]  # fmt: skip


def check_file(path: Path, meta: dict[str, Any]) -> str | None:
    """What is wrong with one backed-up file against its manifest entry, or None."""
    if "link" in meta:
        ok = path.is_symlink() and os.readlink(path) == meta["link"]
        return None if ok else "link missing or changed"
    if not path.is_file() or path.is_symlink():
        return "missing"
    return None if sha256(path) == meta.get("sha256") else "checksum differs"
