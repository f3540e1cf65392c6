"""kill -9 of a project's watcher and of snapshots while the working tree changes."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability.conftest import iterations
from test_git import _snapshot_view, _stop_watchers, _wait_for_watcher

pytestmark = pytest.mark.integration

SNAPSHOT = "from pathlib import Path; from xpkit.capture.git import take_snapshot; " \
    "take_snapshot(Path.cwd())"  # fmt: skip


def _edit(rng: random.Random, root: Path, step: int) -> None:
    """One random change of the kinds a researcher makes between runs."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
                   and "runs" not in p.parts)  # fmt: skip
    what = rng.random()
    if what < 0.35:
        rng.choice(files).write_text(f"EDIT = {step}\n")
    elif what < 0.55:
        folder = root / f"new{step}" / "deep"
        folder.mkdir(parents=True)
        (folder / "made.py").write_text(f"MADE = {step}\n")
        if rng.random() < 0.5:
            (folder / ".env").write_text("TOKEN=x\n")
    elif what < 0.7:
        victim = rng.choice(files)
        if victim.name != ".gitignore":
            victim.unlink()
    elif what < 0.85:
        folders = sorted({p.parent for p in files if p.parent != root})
        if folders:
            source = rng.choice(folders)
            shutil.move(source, root / f"moved{step}")  # a folder moved: the watcher restarts
    else:
        (root / f"loose{step}.py").write_text(f"LOOSE = {step}\n")


def test_snapshots_stay_exact_through_kills_of_the_watcher_and_of_snapshots(
    git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault: kill -9 of the project's watcher, and of snapshots in the middle of their git
    and cache writes, at seeded random moments, while files are edited, deleted, created in
    new folders (secret-looking ones too) and folders moved (15 rounds, soak: 200).
    Promise: every snapshot taken after a kill holds exactly the files, and keeps out
    exactly the secrets, of a snapshot taken with an empty cache; a killed watcher is
    replaced by the next snapshot."""
    root = git_project
    kept = tmp_path / "kept-cache"
    monkeypatch.setenv("XP_WATCH_MIN_FILES", "0")
    monkeypatch.setenv("XP_CACHE_DIR", str(kept))
    rng = random.Random(20261205)
    try:
        _snapshot_view(root, kept, monkeypatch, watch=True)
        _wait_for_watcher(root)
        for step in range(iterations(15, 200)):
            for _ in range(rng.randint(0, 3)):
                _edit(rng, root, step)
            fault = rng.random()
            if fault < 0.3:
                _stop_watchers(kept)
            elif fault < 0.7:
                monkeypatch.setenv("XP_CACHE_DIR", str(kept))
                monkeypatch.setenv("XP_WATCH_MIN_FILES", "0")
                snapshot = subprocess.Popen([sys.executable, "-c", SNAPSHOT], cwd=root)
                time.sleep(rng.uniform(0.0, 0.25))
                snapshot.send_signal(signal.SIGKILL)
                snapshot.wait()
            incremental = _snapshot_view(root, kept, monkeypatch, watch=True)
            scratch = _snapshot_view(root, tmp_path / f"fresh-{step}", monkeypatch)
            assert incremental == scratch, f"round {step} (seed 20261205)"
            shutil.rmtree(tmp_path / f"fresh-{step}")
    finally:
        _stop_watchers(kept)
