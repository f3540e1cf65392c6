"""`xp gc`: remove what can always be recreated, never a run directory.

Idle snapshot worktrees, staging folders of runs whose creation crashed, index entries
of runs that are gone; with snapshots=True also `refs/xp/snapshots/*` and bundles no
live, trashed or half-made run uses and no submit in progress has pinned.

gc takes the locks of the users of what it removes: a worktree is removed under the
workspace lock that every checkout and every run's registration takes, after checking
again that no run uses it. Claims are not gc's business: the scheduler's recovery pass
takes back what dead holders left (`queue/recover.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from xpkit import names
from xpkit.capture.git import SNAPSHOT_REF_PREFIX, git
from xpkit.errors import GitError
from xpkit.execute.workspace import Workspace
from xpkit.store.index import load_rows
from xpkit.store.pins import pinned
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

    # idle worktrees (no run registered as using them), decided under the workspace lock
    if workdir.is_dir():
        workspace = Workspace(project or workdir, workdir)
        for tree in workspace.idle_trees():
            act(f"idle worktree {tree}", lambda tree=tree: workspace.remove_if_idle(tree))
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
    used, pending = pinned(runs_root)
    if pending:
        return ["kept every snapshot: a submit or `xp run` is taking one right now"]
    staging = runs_root / names.META_DIR / "staging"
    half_made = [p for p in staging.iterdir() if p.is_dir()] if staging.is_dir() else []
    for run in _run_dirs(runs_root) + half_made:
        try:
            sha = json.loads((run / "run.json").read_text()).get("snapshot")
        except FileNotFoundError:
            continue  # a half-made run before its run.json: it names no snapshot yet
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
