"""A git or rsync that hangs (network mount, ssh prompt) ends in a clear error within
XP_TOOL_TIMEOUT, and nothing is half-made."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, runs_of

pytestmark = pytest.mark.integration


def hanging(tmp_path: Path, tool: str) -> dict[str, str]:
    """PATH with a `tool` that hangs for `rev-parse`-free calls (git keeps answering
    where it is found, so that the project is still a repository)."""
    folder = tmp_path / f"hang-{tool}"
    folder.mkdir()
    real = shutil.which(tool)
    script = folder / tool
    if tool == "git":  # hang where a snapshot is taken, answer the rest
        script.write_text(
            f'#!/bin/sh\ncase " $* " in *" write-tree "*|*" add "*) sleep 30 ;; esac\n'
            f'exec {real} "$@"\n'
        )
    else:
        script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "XP_TOOL_TIMEOUT": "1"}


def test_a_hanging_git_is_a_clear_error(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "version.txt").write_text("dirty\n")  # a snapshot needs git write-tree
    result = xp("run", "--", "python", "-c", "pass", cwd=git_project,
                env=hanging(tmp_path, "git"), timeout=25)  # fmt: skip
    assert result.returncode == 2, result.output
    assert "did not finish within 1 s" in result.stderr and "Traceback" not in result.output
    assert runs_of(git_project / "runs") == []


def test_a_hanging_rsync_is_a_clear_error(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    assert xp("run", "--", "python", "-c", "pass", cwd=git_project).returncode == 0
    dest = tmp_path / "backups"
    result = xp("backup", str(dest), "--rsync", cwd=git_project, env=hanging(tmp_path, "rsync"),
                timeout=25)  # fmt: skip
    assert result.returncode == 2, result.output
    assert "did not finish within 1 s" in result.stderr and "Traceback" not in result.output
