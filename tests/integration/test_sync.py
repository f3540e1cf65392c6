"""xp sync with real rsync to local target folders."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, wait_for

pytestmark = pytest.mark.integration


def test_sync_creates_updates_and_deletes_only_its_own_files(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    target = tmp_path / "server" / "proj"
    (git_project / "notes.txt").write_text("untracked, not ignored\n")
    (git_project / "runs").mkdir()
    (git_project / "runs" / "big.bin").write_text("ignored by .gitignore\n")
    first = xp("sync", str(target), cwd=git_project)
    assert first.returncode == 0, first.output
    assert (target / "train.py").read_text() == (git_project / "train.py").read_text()
    assert (target / "notes.txt").exists() and (
        target / "experiments" / "toy" / "01_base.xp.toml"
    ).exists()
    assert not (target / "runs").exists()
    (target / "server-only.log").write_text("the server's own file\n")
    (git_project / "version.txt").write_text("v2\n")
    (git_project / "notes.txt").unlink()
    second = xp("sync", str(target), cwd=git_project)
    assert second.returncode == 0 and "1 deleted" in second.stdout
    assert (target / "version.txt").read_text() == "v2\n"
    assert not (target / "notes.txt").exists()
    assert (target / "server-only.log").read_text() == "the server's own file\n"


def test_watch_picks_up_a_save_within_2_s(git_project: Path, tmp_path: Path) -> None:
    target = tmp_path / "server"
    proc = subprocess.Popen([*XP, "sync", str(target), "--watch"], cwd=git_project,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for(lambda: (target / "train.py").exists(), timeout=30)
        time.sleep(0.5)
        saved = time.monotonic()
        (git_project / "version.txt").write_text("saved in the editor\n")
        wait_for(
            lambda: (target / "version.txt").read_text() == "saved in the editor\n", timeout=10
        )
        assert time.monotonic() - saved < 2.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("case", ["outside-git", "project-itself", "no-rsync"])
def test_bad_sync_input(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result], case: str
) -> None:
    cwd, target, env = git_project, str(tmp_path / "t"), None
    if case == "outside-git":
        cwd = tmp_path / "lonely"
        cwd.mkdir()
        fragment = "not inside a git repository"
    elif case == "project-itself":
        target, fragment = str(git_project), "is the project itself"
    else:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for tool in ("git", "sh"):
            os.symlink(
                subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip(),
                bin_dir / tool,
            )
        env = {"PATH": str(bin_dir)}
        fragment = "rsync is not installed: `apt-get install rsync`"
    result = xp("sync", target, cwd=cwd, env=env)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "t").exists()
