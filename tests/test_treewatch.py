"""Many runs in one process reuse the code snapshot while nothing it depends on changed,
and never reuse it after a change (inotify, read at each xp.init())."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import git
from xpkit.capture.treewatch import TreeWatch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")


@pytest.fixture
def watched(git_project: Path) -> tuple[Path, TreeWatch]:
    (git_project / ".gitignore").write_text("/runs/\n/data/\n")
    (git_project / "data").mkdir()
    (git_project / "runs").mkdir()
    (git_project / "pkg" / "sub").mkdir(parents=True)
    (git_project / "pkg" / "sub" / "mod.py").write_text("X = 1\n")
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "pkg")
    return git_project, TreeWatch(git_project, skip=(git_project / "runs",))


def test_nothing_written_is_no_change(watched: tuple[Path, TreeWatch]) -> None:
    root, watch = watched
    (root / "train.py").read_text()
    git(root, "status", "--short")  # may refresh git's index stat cache: still no change
    assert not watch.changed()


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "train.py").write_text("print('edited')\n"),
        lambda root: (root / "pkg" / "sub" / "new.py").write_text("Y = 2\n"),
        lambda root: (root / "pkg" / "sub" / "mod.py").unlink(),
        lambda root: os.rename(root / "pkg" / "sub", root / "pkg" / "moved"),
        lambda root: (root / "newdir").mkdir(),
        lambda root: git(root, "commit", "-q", "--allow-empty", "-m", "moves HEAD"),
        lambda root: (root / ".gitignore").write_text("/runs/\n"),
    ],
    ids=["edit", "new-file-deep", "delete", "rename-dir", "mkdir", "commit", "gitignore"],
)
def test_every_change_a_snapshot_would_see_is_seen(
    watched: tuple[Path, TreeWatch], change: Callable[[Path], object]
) -> None:
    root, watch = watched
    change(root)
    assert watch.changed()
    assert watch.changed()  # and stays so


def test_ignored_folders_and_the_runs_root_do_not_count(watched: tuple[Path, TreeWatch]) -> None:
    root, watch = watched
    (root / "data" / "batch.npy").write_bytes(b"\0" * 100)
    (root / "runs" / "abc123_001_x").mkdir()
    (root / "runs" / "abc123_001_x" / "metrics.jsonl").write_text("{}\n")
    assert not watch.changed()


def test_runs_in_one_process_share_a_snapshot_until_the_code_changes(
    git_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xpkit as xp

    monkeypatch.chdir(git_project)
    (git_project / "version.txt").write_text("dirty\n")  # a dirty tree: a real snapshot

    def snapshot_of_new_run(i: int) -> str:
        run = xp.init(name=f"loop{i}", config={"i": i})
        record = json.loads((run.dir / "run.json").read_text())
        assert json.loads((run.dir / "config.json").read_text()) == {"i": i}
        run.finish()
        return str(record["snapshot"])

    first = [snapshot_of_new_run(i) for i in range(3)]
    assert len(set(first)) == 1
    (git_project / "version.txt").write_text("edited between runs\n")
    after = snapshot_of_new_run(3)
    assert after != first[0]
    shown = git(git_project, "show", f"{after}:version.txt")
    assert shown == "edited between runs\n"  # the reused snapshot never hides an edit
    assert snapshot_of_new_run(4) == after


def test_runs_in_one_process_share_their_provenance_files_and_never_a_stale_one(
    git_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xpkit as xp
    from xpkit.store.rundir import RunDir

    monkeypatch.chdir(git_project)
    (git_project / "version.txt").write_text("dirty\n")

    def new_run(i: int) -> Path:
        run = xp.init(name=f"share{i}", config={"i": i})
        run.log({"loss": 1.0 / (i + 1)})
        run.finish()
        return run.dir

    first, second = new_run(0), new_run(1)
    for name in ("git.json", "env.json", "git.diff"):  # one file, read-only: no editor
        assert os.stat(first / name).st_ino == os.stat(second / name).st_ino
        assert not os.stat(second / name).st_mode & 0o222
    assert "+dirty" in (second / "git.diff").read_text()
    assert json.loads((second / "summary.json").read_text()) == {"loss": 0.5}
    assert json.loads((second / "run.json").read_text())["status"] == "finished"
    # A run's env.json replaced (its own environment built): the next run is not given it
    RunDir(second).write_json("env.json", {"replaced": True})
    monkeypatch.setenv("XP_TEST_MARKER", "set-between-runs")
    third = new_run(2)
    env = json.loads((third / "env.json").read_text())
    assert env["env"]["variables"]["XP_TEST_MARKER"] == "set-between-runs"
    assert "XP_TEST_MARKER" not in (first / "env.json").read_text()
    (git_project / "version.txt").write_text("edited\n")
    fourth = new_run(3)
    assert "+edited" in (fourth / "git.diff").read_text()
    assert "+dirty" in (first / "git.diff").read_text()  # earlier runs keep theirs
    assert os.stat(fourth / "git.json").st_ino != os.stat(third / "git.json").st_ino
    assert not (fourth / "artifacts").exists()  # made on first use
    with xp.init(name="art") as run:
        assert run.artifacts.is_dir()


def test_a_cache_folder_inside_the_project_stays_out_of_its_snapshots(
    git_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xpkit as xp

    monkeypatch.chdir(git_project)
    monkeypatch.setenv("XP_CACHE_DIR", str(git_project / ".xpcache"))  # not in .gitignore
    (git_project / "version.txt").write_text("dirty\n")
    snapshots = set()
    for i in range(3):
        with xp.init(name=f"cache{i}") as run:
            snapshots.add(json.loads((run.dir / "run.json").read_text())["snapshot"])
            diff = (run.dir / "git.diff").read_text()
    assert (git_project / ".xpcache").is_dir()
    assert len(snapshots) == 1  # its index copies, rewritten by every run, are no change
    assert ".xpcache" not in diff and "+dirty" in diff
    listed = git(git_project, "ls-tree", "-r", "--name-only", snapshots.pop())
    assert ".xpcache" not in listed
