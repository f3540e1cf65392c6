"""`xp sync TARGET... [--watch]`: one-way mirror of the project's git-visible files
(`git ls-files -co --exclude-standard`) to servers, with rsync.

It deletes on a target only files it synced there earlier that are gone now (a
manifest per target, on local disk): anything else on the target is never touched,
so the `rsync --delete` accident cannot happen. A target that is down is reported and
retried (with --watch), never fatal for the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from xpkit.capture.git import git, repo_root
from xpkit.errors import XpError
from xpkit.settings import XP_CACHE_DIR, XP_TOOL_TIMEOUT
from xpkit.subprocs import rsync_args, run_tool
from xpkit.values import is_remote


class SyncError(XpError):
    """A sync that cannot start (rsync missing, a target that is the project itself)."""


@dataclass
class SyncResult:
    target: str
    sent: int
    deleted: int
    error: str | None = None


def _rsync() -> str:
    found = shutil.which("rsync")
    if not found:
        raise SyncError(
            "rsync is not installed: `apt-get install rsync` (Debian/Ubuntu), "
            "`dnf install rsync`, or `brew install rsync`"
        )
    return found


def check_targets(project: Path, targets: list[str]) -> None:
    for target in targets:
        if is_remote(target):
            continue
        path = Path(target).expanduser().resolve()
        if path == project or project in path.parents or path in project.parents:
            raise SyncError(
                f"target {target} is the project itself, inside it, or holds it; "
                "give a folder elsewhere"
            )


def _manifest_path(project: Path, target: str) -> Path:
    key = hashlib.sha1(f"{project}\0{target}".encode()).hexdigest()[:16]
    return XP_CACHE_DIR.get() / "sync" / f"{key}.json"


def project_files(project: Path) -> list[str]:
    listed = git(project, "ls-files", "-co", "--exclude-standard", "-z")
    return sorted(f for f in listed.split("\0") if f and (project / f).is_file())


def sync_once(project: Path, target: str) -> SyncResult:
    rsync = _rsync()
    files = project_files(project)
    manifest = _manifest_path(project, target)
    try:
        before = set(json.loads(manifest.read_text()))
    except (OSError, ValueError):
        before = set()
    gone = sorted(before - set(files))
    destination = target if target.endswith("/") else target + "/"
    if not is_remote(target):
        Path(target).expanduser().mkdir(parents=True, exist_ok=True)
    # --checksum: a file saved twice within one second keeps its size and mtime.
    error = _send(rsync, ["--checksum"], files, project, destination, target)
    if error:
        return SyncResult(target, 0, 0, error)
    if gone:  # only what we synced before and the project no longer has
        error = _send(rsync, ["--delete-missing-args"], gone, project, destination, target)
        if error:
            return SyncResult(target, len(files), 0, error)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(files))
    return SyncResult(target, len(files), len(gone))


def _send(
    rsync: str, options: list[str], paths: list[str], project: Path, destination: str, target: str
) -> str | None:
    """rsync `paths` of the project to the destination; the error, or None."""
    args = [
        *rsync_args(rsync),
        "-a",
        *options,
        "--from0",
        "--files-from=-",
        f"{project}/",
        destination,
    ]
    try:
        done = run_tool(
            args,
            input="\0".join(paths),
            timeout=XP_TOOL_TIMEOUT.get(),
            error=SyncError,
            what=f"rsync to {target}",
        )
    except SyncError as e:
        return str(e)
    if done.returncode != 0:
        return done.stderr.strip()[-300:] or f"rsync exit {done.returncode}"
    return None


def sync(project_dir: Path, targets: list[str]) -> list[SyncResult]:
    project = repo_root(project_dir)
    _rsync()
    check_targets(project, targets)
    return [sync_once(project, t) for t in targets]


def watch(
    project_dir: Path,
    targets: list[str],
    report: object,
    debounce: float = 0.3,
    retry: float = 10.0,
) -> None:
    """Sync now, then again on every save (debounced); retry failed targets."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    from xpkit.settings import load_settings

    project = repo_root(project_dir)
    check_targets(project, targets)
    busy = {".git"}  # runs write here all the time; git ignores them anyway
    try:
        busy.add(load_settings(project).runs.relative_to(project).parts[0])
    except (ValueError, IndexError):
        pass
    changed = threading.Event()
    changed.set()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            parts = Path(os.fsdecode(event.src_path)).relative_to(project).parts
            if parts and parts[0] not in busy:
                changed.set()

    observer = Observer()
    observer.schedule(Handler(), str(project), recursive=True)
    observer.start()
    try:
        while True:
            if not changed.wait(timeout=retry):
                changed.set()  # periodic retry of targets that were down
                continue
            time.sleep(debounce)
            changed.clear()
            for result in [sync_once(project, t) for t in targets]:
                report(result)  # type: ignore[operator]
    finally:
        observer.stop()
        observer.join()
