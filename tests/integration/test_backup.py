"""xp backup: incremental hard-linked snapshots, verify, list, restore."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, runs_of

pytestmark = pytest.mark.integration


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def project_with_runs(git_project: Path, xp: Callable[..., Result]) -> Path:
    assert xp("run", "experiments/toy/01_base.xp.toml", cwd=git_project).returncode == 0
    return git_project


def test_second_backup_hard_links_everything_and_verify_catches_a_flipped_byte(
    project_with_runs: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    dest = tmp_path / "backups"
    first = xp("backup", str(dest), cwd=project_with_runs)
    assert first.returncode == 0, first.output
    import time

    time.sleep(1.1)  # snapshots are named by the second
    second = xp("backup", str(dest), cwd=project_with_runs)
    assert second.returncode == 0
    old, new = sorted(p for p in dest.iterdir() if not p.name.startswith("."))
    files = [p for p in new.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert files and all(p.stat().st_ino == (old / p.relative_to(new)).stat().st_ino for p in files)
    assert f"{len(files)} hard-linked" in second.stdout
    listing = xp("backup", str(dest), "--list", cwd=project_with_runs).stdout
    assert old.name in listing and new.name in listing
    assert xp("backup", str(dest), "--verify", cwd=project_with_runs).returncode == 0
    victim = next(p for p in files if p.name == "output.log")
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    bad = xp("backup", str(dest), "--verify", cwd=project_with_runs)
    assert bad.returncode == 1 and "checksum differs" in bad.stdout and "output.log" in bad.stdout


def test_restore_one_run_byte_identical(
    project_with_runs: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    dest = tmp_path / "backups"
    runs_root = project_with_runs / "runs"
    name = runs_of(runs_root)[0].name
    before = tree(runs_root / name)
    assert xp("backup", str(dest), cwd=project_with_runs).returncode == 0
    refused = xp("backup", str(dest), "--restore", "--run", name, cwd=project_with_runs)
    assert refused.returncode == 2 and "it exists" in refused.stderr
    assert xp("rm", name, "--yes", cwd=project_with_runs).returncode == 0
    assert xp("trash", "empty", "--yes", cwd=project_with_runs).returncode == 0
    restored = xp("backup", str(dest), "--restore", "--run", name, cwd=project_with_runs)
    assert restored.returncode == 0 and "restored 1 run(s)" in restored.stdout
    assert tree(runs_root / name) == before


@pytest.mark.parametrize("where", ["inside", "file"], ids=["inside-runs-root", "not-writable"])
def test_bad_destinations(
    project_with_runs: Path, tmp_path: Path, xp: Callable[..., Result], where: str
) -> None:
    if where == "inside":
        dest, fragment = project_with_runs / "runs" / "backup", "is inside the runs root"
    else:
        (tmp_path / "a-file").write_text("x")
        dest, fragment = tmp_path / "a-file" / "backup", "is not writable"
    result = xp("backup", str(dest), cwd=project_with_runs)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.output
    assert len(runs_of(project_with_runs / "runs")) == 2


def test_rsync_backups_hard_link_and_verify(
    project_with_runs: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """The path `host:path` destinations take (rsync --link-dest), on a local folder."""
    import time

    dest = tmp_path / "remote-like"
    first = xp("backup", str(dest), "--rsync", cwd=project_with_runs)
    assert first.returncode == 0, first.output
    time.sleep(1.1)
    assert xp("backup", str(dest), "--rsync", cwd=project_with_runs).returncode == 0
    old, new = sorted(p for p in dest.iterdir() if not p.name.startswith("."))
    files = [p for p in new.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert files and all(p.stat().st_ino == (old / p.relative_to(new)).stat().st_ino for p in files)
    assert xp("backup", str(dest), "--verify", cwd=project_with_runs).returncode == 0
