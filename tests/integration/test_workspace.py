"""Snapshot worktrees: shared per snapshot, recycled incrementally, bounded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, git, runs_of
from xpkit.capture.git import take_snapshot
from xpkit.execute.workspace import IDLE_KEPT, Workspace

pytestmark = pytest.mark.integration


def snapshot_with(project: Path, version: str) -> str:
    (project / "version.txt").write_text(version)
    return take_snapshot(project).snapshot


def test_runs_of_one_snapshot_share_a_worktree(git_project: Path, tmp_path: Path) -> None:
    ws = Workspace(git_project, tmp_path / "work")
    sha = snapshot_with(git_project, "a\n")
    first = ws.acquire(sha, "run-1")
    second = ws.acquire(sha, "run-2")
    assert first == second
    assert (first / "version.txt").read_text() == "a\n"
    assert git(first, "rev-parse", "HEAD").strip() == sha


def test_idle_worktree_is_recycled_for_the_next_snapshot(git_project: Path, tmp_path: Path) -> None:
    ws = Workspace(git_project, tmp_path / "work")
    tree = ws.acquire(snapshot_with(git_project, "a\n"), "run-1")
    (tree / "leftover.txt").write_text("written by the run")
    ws.release(tree, "run-1")
    sha_b = snapshot_with(git_project, "b\n")
    again = ws.acquire(sha_b, "run-2")
    assert again == tree
    assert (again / "version.txt").read_text() == "b\n"
    assert not (again / "leftover.txt").exists()
    assert git(again, "rev-parse", "HEAD").strip() == sha_b


def test_a_busy_worktree_is_never_switched(git_project: Path, tmp_path: Path) -> None:
    ws = Workspace(git_project, tmp_path / "work")
    busy = ws.acquire(snapshot_with(git_project, "a\n"), "run-1")
    other = ws.acquire(snapshot_with(git_project, "b\n"), "run-2")
    assert busy != other
    assert (busy / "version.txt").read_text() == "a\n"
    assert (other / "version.txt").read_text() == "b\n"


def test_at_most_a_few_idle_worktrees_are_kept(git_project: Path, tmp_path: Path) -> None:
    ws = Workspace(git_project, tmp_path / "work")
    trees = [ws.acquire(snapshot_with(git_project, f"{i}\n"), f"run-{i}") for i in range(4)]
    for i, tree in enumerate(trees):
        ws.release(tree, f"run-{i}")
    left = [t for t in trees if t.exists()]
    assert len(left) == IDLE_KEPT
    listed = git(git_project, "worktree", "list", "--porcelain")
    assert listed.count("worktree ") == 1 + IDLE_KEPT  # the project itself + kept ones


def test_link_folders_are_symlinked(git_project: Path, tmp_path: Path) -> None:
    (git_project / "datasets").mkdir()
    (git_project / "datasets" / "x.csv").write_text("1,2\n")
    (git_project / ".gitignore").write_text("/runs/\n/datasets/\n")
    ws = Workspace(git_project, tmp_path / "work", link=("datasets", "missing"))
    with pytest.warns(UserWarning, match="'missing' does not exist"):
        tree = ws.acquire(take_snapshot(git_project).snapshot, "run-1")
    assert (tree / "datasets").is_symlink()
    assert (tree / "datasets" / "x.csv").read_text() == "1,2\n"


def test_submodules_are_checked_out_at_the_snapshot_with_their_changes(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """The worktree holds each submodule at the commit the snapshot recorded; changes not
    committed inside a submodule make the run dirty, are in its git.diff and in its code."""
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "lib.py").write_text("VALUE = 1\n")
    git(lib, "add", "-A")
    git(lib, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "lib")
    git(git_project, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib),
        "libs/sub")  # fmt: skip
    (git_project / "show.py").write_text(
        'import sys; sys.path.insert(0, "libs/sub"); import lib; print("VALUE", lib.VALUE)\n'
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "with a submodule")
    runs = git_project / "runs"

    def run_and_see() -> tuple[str, dict[str, object], str]:
        result = xp("run", "--", "python", "show.py", cwd=git_project)
        assert result.returncode == 0, result.output
        run = sorted(runs_of(runs), key=lambda r: r.stat().st_mtime)[-1]
        value = next(line for line in (run / "output.log").read_text().splitlines()
                     if line.startswith("VALUE"))  # fmt: skip
        return value, json.loads((run / "git.json").read_text()), (run / "git.diff").read_text()

    value, info, _ = run_and_see()
    assert value == "VALUE 1" and info["dirty"] is False
    (git_project / "libs" / "sub" / "lib.py").write_text("VALUE = 2  # not committed\n")
    value, info, diff = run_and_see()
    assert value == "VALUE 2" and info["dirty"] is True
    assert "Submodule libs/sub" in diff and "+VALUE = 2  # not committed" in diff
    git(git_project / "libs" / "sub", "-c", "user.name=t", "-c", "user.email=t@e", "commit",
        "-qam", "v2")  # fmt: skip
    (git_project / "libs" / "sub" / "lib.py").write_text("VALUE = 3\n")
    value, info, _ = run_and_see()  # the worktree is recycled: the submodule moves too
    assert value == "VALUE 3" and info["dirty"] is True
    assert git(git_project, "status", "--porcelain").strip() == "M libs/sub"  # untouched
