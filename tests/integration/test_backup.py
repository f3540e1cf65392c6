"""xp backup: incremental hard-linked snapshots, verify, list, restore."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
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
    after = tree(runs_root / name)
    assert after.pop("restored.json") and after == before


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


def _latest(dest: Path) -> Path:
    return sorted(p for p in dest.iterdir() if not p.name.startswith("."))[-1]


def test_restore_refuses_a_bad_file_unless_forced(
    project_with_runs: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    dest, runs_root = tmp_path / "backups", project_with_runs / "runs"
    names = [r.name for r in runs_of(runs_root)]
    assert xp("backup", str(dest), cwd=project_with_runs).returncode == 0
    assert xp("rm", *names, "--yes", cwd=project_with_runs).returncode == 0
    victim = _latest(dest) / names[1] / "output.log"
    victim.write_bytes(victim.read_bytes() + b"tampered")
    refused = xp("backup", str(dest), "--restore", cwd=project_with_runs)
    assert refused.returncode == 2 and "Traceback" not in refused.output
    assert (
        f"{names[1]}/output.log: checksum differs" in refused.stderr and "--force" in refused.stderr
    )
    assert runs_of(runs_root) == [] and not list((runs_root / ".xp" / "restoring").glob("*_*"))
    forced = xp("backup", str(dest), "--restore", "--force", cwd=project_with_runs)
    assert forced.returncode == 0 and "restored with a bad file" in forced.stderr
    assert [r.name for r in runs_of(runs_root)] == names
    marks = json.loads((runs_root / names[1] / "restored.json").read_text())
    assert marks["bad_files"] == ["output.log: checksum differs"]
    assert json.loads((runs_root / names[0] / "restored.json").read_text())["bad_files"] == []


def test_restoring_beside_newer_runs_gives_clashing_runs_new_trials(
    project_with_runs: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """Old runs restored into a runs root that has new runs of the same experiment (a new
    machine, a fresh root): no two runs share an experiment ID and trial."""
    dest, runs_root = tmp_path / "backups", project_with_runs / "runs"
    old = [r.name for r in runs_of(runs_root)]
    assert xp("backup", str(dest), cwd=project_with_runs).returncode == 0
    shutil.rmtree(runs_root)  # a fresh runs root ...
    assert xp("run", "experiments/toy/01_base.xp.toml", cwd=project_with_runs).returncode == 0
    assert [r.name for r in runs_of(runs_root)] == old  # ... whose new runs reuse trials 1, 2
    restored = xp("backup", str(dest), "--restore", cwd=project_with_runs)
    assert restored.returncode == 0, restored.output
    assert f"{old[0]}: restored as abc123_003_base-lr0.1" in restored.stdout
    names = [r.name for r in runs_of(runs_root)]
    trials = [int(n.split("_")[1]) for n in names]
    assert sorted(trials) == [1, 2, 3, 4]
    assert json.loads((runs_root / "abc123_003_base-lr0.1" / "run.json").read_text())["trial"] == 3
    assert xp("show", "abc123/1", cwd=project_with_runs).returncode == 0
    new = xp("run", "experiments/toy/01_base.xp.toml", cwd=project_with_runs)
    assert new.returncode == 0 and len(runs_of(runs_root)) == 6  # trials 5 and 6


def test_backup_keeps_links_as_links_and_tolerates_vanishing_files(
    project_with_runs: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    dest, runs_root = tmp_path / "backups", project_with_runs / "runs"
    run = runs_of(runs_root)[0]
    outside = tmp_path / "id_rsa"
    outside.write_text("PRIVATE KEY OUTSIDE THE RUNS ROOT")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_text("a dataset outside")
    artifacts = run / "artifacts"
    (artifacts / "key").symlink_to(outside)
    (artifacts / "dangling").symlink_to(tmp_path / "nothing-there")
    (artifacts / "data").symlink_to(tmp_path / "data", target_is_directory=True)
    (dest / ".partial-2020-01-01T00-00-00" / "x").mkdir(parents=True)  # a killed backup
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(run)])  # renames temp files
    try:
        result = xp("backup", str(dest), cwd=project_with_runs)
    finally:
        churn.kill()
        churn.wait()
    assert result.returncode == 0 and "Traceback" not in result.output, result.output
    snap = _latest(dest)
    for name, target in (("key", outside), ("dangling", tmp_path / "nothing-there"),
                         ("data", tmp_path / "data")):  # fmt: skip
        copy = snap / run.name / "artifacts" / name
        assert copy.is_symlink() and os.readlink(copy) == str(target)
    everything = b"".join(p.read_bytes() for p in snap.rglob("*") if p.is_file() and
                          not p.is_symlink())  # fmt: skip
    assert b"PRIVATE KEY OUTSIDE" not in everything and b"a dataset outside" not in everything
    assert not list(dest.glob(".partial-*"))
    assert xp("backup", str(dest), "--verify", cwd=project_with_runs).returncode == 0


CHURN = """
import os, sys, itertools
folder = sys.argv[1]
for i in itertools.count():
    path = os.path.join(folder, f".tmp-{i % 50}.json")
    with open(path, "w") as f:
        f.write("x" * 1000)
    os.replace(path, os.path.join(folder, "churn.json"))
"""
