"""`xp gc`: remove what can always be recreated, never a run directory.

Idle snapshot worktrees, stale claims of dead workers on this host, staging folders
of runs whose creation crashed, index entries of runs that are gone; with
snapshots=True also `refs/xp/snapshots/*` and bundles no live or trashed run uses.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from xpkit import names
from xpkit.capture.git import SNAPSHOT_REF_PREFIX, git
from xpkit.errors import GitError
from xpkit.execute.workspace import Workspace
from xpkit.store.index import load_rows
from xpkit.store.locks import pid_alive
from xpkit.store.trash import trash_dir

STAGING_AGE = 3600.0


def _run_dirs(runs_root: Path) -> list[Path]:
    found = []
    for folder in (runs_root, trash_dir(runs_root)):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.is_dir() and names.parse_run_name(p.name)]
    return found


def collect(runs_root: Path, workdir: Path, project: Path | None, *, snapshots: bool,
            dry_run: bool) -> list[str]:  # fmt: skip
    """What was (or, with dry_run, would be) removed, one line each."""
    done: list[str] = []

    def act(line: str, action: object) -> None:
        done.append(("would remove " if dry_run else "removed ") + line)
        if not dry_run and callable(action):
            action()

    # idle worktrees (no run registered as using them)
    for tree in sorted(workdir.glob("wt-*")) if workdir.is_dir() else []:
        if tree.is_dir() and "." not in tree.name:
            users = tree.with_name(tree.name + ".users")
            if not users.is_dir() or not any(users.iterdir()):

                def drop(tree: Path = tree) -> None:
                    Workspace(project or tree, workdir).remove(tree)

                act(f"idle worktree {tree}", drop)
    # stale claims: queued runs claimed by a process of this host that is gone
    host = socket.gethostname()
    for run in _run_dirs(runs_root):
        claim = run / ".claim"
        try:
            owner = claim.read_text().split()[-1]
            info = json.loads((run / "run.json").read_text())
        except (OSError, ValueError, IndexError):
            continue
        claimer_host, _, pid = owner.rpartition(":")
        if info.get("status") == "queued" and claimer_host == host and pid.isdigit() \
                and not pid_alive(int(pid)):  # fmt: skip
            act(f"stale claim of {run.name} by dead {owner}", claim.unlink)
    # staging folders of runs whose creation crashed
    staging = runs_root / names.META_DIR / "staging"
    for folder in sorted(staging.iterdir()) if staging.is_dir() else []:
        if time.time() - folder.stat().st_mtime > STAGING_AGE:
            act(f"half-made run {folder.name}", lambda f=folder: shutil.rmtree(f))
    if not dry_run:
        load_rows(runs_root)  # the index forgets runs that are gone
    if snapshots:
        done += _snapshots(runs_root, project, dry_run)
    return done


def _snapshots(runs_root: Path, project: Path | None, dry_run: bool) -> list[str]:
    used = set()
    for run in _run_dirs(runs_root):
        try:
            sha = json.loads((run / "run.json").read_text()).get("snapshot")
        except (OSError, ValueError):
            return ["kept every snapshot: a run.json could not be read"]  # be safe
        if sha:
            used.add(sha)
    lines = []
    verb = "would remove" if dry_run else "removed"
    if project is not None:
        try:
            refs = git(project, "for-each-ref", "--format=%(refname)", SNAPSHOT_REF_PREFIX).split()
        except GitError:
            refs = []
        for ref in refs:
            if ref.removeprefix(SNAPSHOT_REF_PREFIX) not in used:
                lines.append(f"{verb} {ref}")
                if not dry_run:
                    git(project, "update-ref", "-d", ref)
    bundles = runs_root / names.META_DIR / "bundles"
    for bundle in sorted(bundles.glob("*.bundle")) if bundles.is_dir() else []:
        if bundle.stem not in used:
            lines.append(f"{verb} bundle {bundle.name}")
            if not dry_run:
                os.unlink(bundle)
    return lines
