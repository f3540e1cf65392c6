"""xp gc removes what can be recreated and never a run directory."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, git, runs_of

pytestmark = pytest.mark.integration


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "/.xp/" not in f"/{p.relative_to(folder)}"}  # fmt: skip


def test_gc_dry_run_changes_nothing_then_gc_cleans(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "version.txt").write_text("dirty\n")  # a snapshot of its own
    assert xp("run", "--", "python", "-c", "pass", cwd=git_project).returncode == 0
    runs_root = git_project / "runs"
    (run,) = runs_of(runs_root)
    assert xp("rm", run.name, "--yes", cwd=git_project).returncode == 0
    assert (
        xp("trash", "empty", "--yes", cwd=git_project).returncode == 0
    )  # its snapshot is now unused
    staging = runs_root / ".xp" / "staging" / "abc123_099_crashed"
    staging.mkdir(parents=True)
    old = time.time() - 7200
    os.utime(staging, (old, old))
    (git_project / "version.txt").write_text("dirty again\n")  # a different snapshot
    assert xp("run", "--", "python", "-c", "pass", cwd=git_project).returncode == 0
    before = fingerprint(runs_root)
    refs_before = git(git_project, "for-each-ref", "refs/xp/snapshots/")
    dry = xp("gc", "--snapshots", "--dry-run", cwd=git_project)
    assert dry.returncode == 0
    assert "would remove idle worktree" in dry.stdout and "would remove half-made run" in dry.stdout
    assert "would remove refs/xp/snapshots/" in dry.stdout
    assert fingerprint(runs_root) == before and staging.exists()
    assert git(git_project, "for-each-ref", "refs/xp/snapshots/") == refs_before
    done = xp("gc", "--snapshots", cwd=git_project)
    assert done.returncode == 0 and "removed refs/xp/snapshots/" in done.stdout
    assert fingerprint(runs_root) == before  # no run directory touched
    assert not staging.exists()
    (live,) = runs_of(runs_root)
    import json

    live_sha = json.loads((live / "run.json").read_text())["snapshot"]
    assert git(
        git_project, "for-each-ref", "--format=%(refname)", "refs/xp/snapshots/"
    ).split() == [f"refs/xp/snapshots/{live_sha}"]
    assert "nothing to remove" in xp("gc", "--snapshots", cwd=git_project).stdout
