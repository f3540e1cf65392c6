"""kill -9 of `xp backup` and of `xp backup --restore` at random moments."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, runs_of
from reliability.conftest import iterations
from reliability.invariants import tools_still_work

pytestmark = pytest.mark.integration


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "restored.json"}  # fmt: skip


@pytest.fixture
def many_files(git_project: Path, xp: Callable[..., Result]) -> Path:
    """Two runs with 400 artifacts of 64 KiB each: a restore takes a while."""
    assert xp("run", "experiments/toy/01_base.xp.toml", cwd=git_project).returncode == 0
    for run in runs_of(git_project / "runs"):
        for i in range(400):
            (run / "artifacts" / f"part-{i:03d}.bin").write_bytes(os.urandom(1 << 16))
    return git_project


def _kill_at(args: list[str], cwd: Path, delay: float) -> None:
    proc = subprocess.Popen([*XP, *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill9_of_restore_leaves_no_half_run_and_a_retry_works(
    many_files: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 of `xp backup --restore` at a random moment (seeded; 4 times, soak: 30).
    Promise: the runs root holds each run whole or not at all (never a truncated run that
    lists as finished), and the next restore completes byte-identical."""
    dest, runs_root = tmp_path / "backups", many_files / "runs"
    before = {r.name: _tree(r) for r in runs_of(runs_root)}
    assert xp("backup", str(dest), cwd=many_files).returncode == 0
    rng = random.Random(11)
    for _ in range(iterations(4, 30)):
        for run in runs_of(runs_root):
            assert xp("rm", run.name, "--yes", cwd=many_files).returncode == 0
        assert xp("trash", "empty", "--yes", cwd=many_files).returncode == 0
        _kill_at(["backup", str(dest), "--restore"], many_files, rng.uniform(0.2, 1.2))
        for run in runs_of(runs_root):  # whatever is there is whole
            assert _tree(run) == before[run.name], run.name
        retry = xp("backup", str(dest), "--restore", cwd=many_files)
        if len(runs_of(runs_root)) < len(before):
            assert retry.returncode == 0, retry.output
        assert {r.name: _tree(r) for r in runs_of(runs_root)} == before
    tools_still_work(xp, many_files, {})


def test_kill9_of_backup_leaves_only_complete_snapshots(
    many_files: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 of `xp backup` at a random moment (seeded; 4 times, soak: 30).
    Promise: every snapshot listed verifies; the half-written one is hidden and removed
    by the next backup, which verifies too."""
    dest = tmp_path / "backups"
    rng = random.Random(12)
    for _ in range(iterations(4, 30)):
        _kill_at(["backup", str(dest)], many_files, rng.uniform(0.1, 0.8))
        time.sleep(1.1)  # snapshots are named by the second
        done = xp("backup", str(dest), cwd=many_files)
        assert done.returncode == 0, done.output
        assert not list(dest.glob(".partial-*"))
        assert xp("backup", str(dest), "--verify", cwd=many_files).returncode == 0
