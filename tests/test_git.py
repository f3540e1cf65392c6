from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import git
from xpkit.capture import staging, watcher
from xpkit.capture.git import SNAPSHOT_REF_PREFIX, repo_root, take_snapshot
from xpkit.errors import GitError


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_tree_snapshot_is_head(git_project: Path) -> None:
    head = git(git_project, "rev-parse", "HEAD").strip()
    snap = take_snapshot(git_project)
    assert snap.snapshot == head
    assert not snap.dirty
    assert snap.branch == "main"
    assert snap.diff == ""
    assert git(git_project, "rev-parse", SNAPSHOT_REF_PREFIX + head).strip() == head


def test_dirty_tree_snapshot_leaves_index_stash_and_head_alone(git_project: Path) -> None:
    (git_project / "version.txt").write_text("v2-staged\n")
    git(git_project, "add", "version.txt")
    (git_project / "train.py").write_text("print('unstaged edit')\n")
    (git_project / "stashme.txt").write_text("x")
    git(git_project, "stash", "push", "-u", "-q", "--", "stashme.txt")
    (git_project / "new_module.py").write_text("NEW = 1\n")
    (git_project / "runs").mkdir()
    (git_project / "runs" / "ignored.txt").write_text("ignored by .gitignore")
    index = git_project / ".git" / "index"
    before = {
        "index": digest(index),
        "head": git(git_project, "rev-parse", "HEAD"),
        "stash": git(git_project, "stash", "list"),
        "status": git(git_project, "status", "--porcelain"),
    }
    snap = take_snapshot(git_project)
    after = {
        "index": digest(index),
        "head": git(git_project, "rev-parse", "HEAD"),
        "stash": git(git_project, "stash", "list"),
        "status": git(git_project, "status", "--porcelain"),
    }
    assert before == after
    assert snap.dirty
    assert git(git_project, "rev-parse", f"{snap.snapshot}^").strip() == before["head"].strip()
    files = git(git_project, "ls-tree", "-r", "--name-only", snap.snapshot).split()
    assert "new_module.py" in files
    assert "stashme.txt" not in files
    assert not any(f.startswith("runs/") for f in files)
    assert git(git_project, "show", f"{snap.snapshot}:version.txt") == "v2-staged\n"
    assert git(git_project, "show", f"{snap.snapshot}:train.py") == "print('unstaged edit')\n"
    assert "+NEW = 1" in snap.diff
    assert "+v2-staged" in snap.diff


def test_binary_and_large_untracked_files_are_listed_not_inlined(git_project: Path) -> None:
    (git_project / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (git_project / "big.txt").write_text("x" * 100 + "\n" * 20_000 + "y" * (1024 * 1024))
    (git_project / "small.txt").write_text("hello\n")
    snap = take_snapshot(git_project)
    listed = {f["path"]: f["reason"] for f in snap.not_inlined}
    assert listed == {"weights.bin": "binary", "big.txt": "large"}
    assert "+hello" in snap.diff
    assert "yyyy" not in snap.diff
    assert "#   big.txt" in snap.diff


def test_new_files_are_inlined_up_to_a_limit_per_diff(git_project: Path) -> None:
    """A sweep's outputs left untracked (60 text files of 900 KB) must not make every
    git.diff 54 MB: new files are inlined up to 8 MiB in all, the rest listed."""
    outputs = git_project / "outputs"
    outputs.mkdir()
    for i in range(60):
        (outputs / f"log-{i:02d}.txt").write_text(f"line of output {i}\n" * 50_000)
    snap = take_snapshot(git_project)
    over = [f["path"] for f in snap.not_inlined if f["reason"] == "over the diff's limit"]
    assert 45 <= len(over) <= 52 and "outputs/log-59.txt" in over
    assert 7 * 2**20 <= len(snap.diff) <= 9 * 2**20
    assert "+line of output 0" in snap.diff and "+line of output 59" not in snap.diff
    tree = git(git_project, "ls-tree", "-r", "--name-only", snap.snapshot).split()
    assert "outputs/log-59.txt" in tree  # listed, still in the snapshot


def test_excluded_paths_stay_out_even_if_not_ignored(git_project: Path) -> None:
    (git_project / "work").mkdir()
    (git_project / "work" / "tree.txt").write_text("x")
    snap = take_snapshot(git_project, exclude=(git_project / "work",))
    files = git(git_project, "ls-tree", "-r", "--name-only", snap.snapshot).split()
    assert "work/tree.txt" not in files


def test_repository_without_commits(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.py").write_text("A = 1\n")
    snap = take_snapshot(tmp_path)
    assert snap.commit is None and snap.dirty
    assert "+A = 1" in snap.diff


def test_not_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not inside a git repository.*--no-git"):
        repo_root(tmp_path)


def test_an_unchanged_tree_reuses_its_snapshot_until_anything_changes(git_project: Path) -> None:
    """A grid's runs of one working tree share one snapshot commit (a memo in the cache),
    and nothing that changes the tree or HEAD, or a missing ref, reuses it."""
    (git_project / "train.py").write_text("print('edited')\n")
    first = take_snapshot(git_project)
    time.sleep(1.1)  # a new commit-tree would now get another timestamp, so another sha
    again = take_snapshot(git_project)
    assert (again.snapshot, again.dirty, again.diff) == (first.snapshot, True, first.diff)
    assert "edited" in again.diff

    (git_project / "train.py").write_text("print('edited twice')\n")
    edited = take_snapshot(git_project)
    assert edited.snapshot != first.snapshot and "edited twice" in edited.diff

    git(git_project, "update-ref", "-d", SNAPSHOT_REF_PREFIX + edited.snapshot)  # as xp gc does
    time.sleep(1.1)
    recreated = take_snapshot(git_project)
    assert recreated.snapshot != edited.snapshot  # committed again, and pinned again
    assert git(git_project, "rev-parse", SNAPSHOT_REF_PREFIX + recreated.snapshot).strip()

    git(git_project, "commit", "-qam", "edit")  # same tree, new HEAD: a clean snapshot
    clean = take_snapshot(git_project)
    assert not clean.dirty and clean.diff == ""
    assert clean.snapshot == git(git_project, "rev-parse", "HEAD").strip()


def test_secret_globs_win_over_gitignore_negations_and_keep_global_excludes(
    git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret globs are ignore rules for the snapshot's `git add`: a `.gitignore`
    `!rule` that lets a secret-looking file in does not put it in the snapshot, and the
    user's own global excludes file still applies."""
    global_ignore = tmp_path / "global-ignore"
    global_ignore.write_text("*.scratch\n")
    git(git_project, "config", "core.excludesFile", str(global_ignore))
    (git_project / ".gitignore").write_text("/runs/\n.env*\n!.env.production\n")
    (git_project / ".env.production").write_text("TOKEN=abc\n")
    (git_project / "deep" / "er").mkdir(parents=True)
    (git_project / "deep" / "er" / "server.pem").write_text("KEY\n")
    (git_project / "notes.scratch").write_text("mine\n")
    (git_project / "kept.py").write_text("K = 1\n")
    snap = take_snapshot(git_project)
    tree = git(git_project, "ls-tree", "-r", "--name-only", snap.snapshot).split()
    assert "kept.py" in tree
    assert not {".env.production", "deep/er/server.pem", "notes.scratch"} & set(tree)
    assert snap.kept_out == [".env.production", "deep/er/server.pem"]
    assert snap.tracked_secrets == [] and "TOKEN" not in snap.diff


def test_the_snapshot_index_follows_what_the_user_tracks(git_project: Path) -> None:
    """The snapshot keeps its own index between snapshots (git's stat cache), but a file
    the user starts tracking by force (`git add -f` of an ignored file) is in the next one."""
    (git_project / "train.py").write_text("print('v2')\n")
    take_snapshot(git_project)
    (git_project / "runs").mkdir(exist_ok=True)
    (git_project / "runs" / "pinned.txt").write_text("forced in\n")
    git(git_project, "add", "-f", "runs/pinned.txt")
    snap = take_snapshot(git_project)
    assert "runs/pinned.txt" in git(git_project, "ls-tree", "-r", "--name-only", snap.snapshot)
    git(git_project, "rm", "-q", "--cached", "runs/pinned.txt")
    snap = take_snapshot(git_project)
    assert "runs/pinned.txt" not in git(git_project, "ls-tree", "-r", "--name-only", snap.snapshot)


def test_a_same_size_edit_in_the_same_second_is_in_the_next_snapshot(git_project: Path) -> None:
    """git trusts a cached stat only for files older than the index holding it; the
    snapshot's kept index is copied with its mtime, so an edit of the same size made in
    the same second as the previous one is still seen (found by the gc fault test)."""
    target = git_project / "version.txt"
    for attempt in range(5):
        while time.time() % 1 > 0.2:  # start just after a second begins
            time.sleep(0.01)
        second = int(time.time())
        target.write_text(f"v{attempt}a\n")
        first = take_snapshot(git_project)
        target.write_text(f"v{attempt}b\n")  # same size, same second (when fast enough)
        if int(time.time()) != second:
            continue  # too slow to be the racy case: try again
        time.sleep(1.05 - time.time() % 1)  # the next snapshot's copy is a second later
        second_snap = take_snapshot(git_project)
        assert git(git_project, "show", f"{first.snapshot}:version.txt") == f"v{attempt}a\n"
        assert git(git_project, "show", f"{second_snap.snapshot}:version.txt") == f"v{attempt}b\n"
        return
    pytest.skip("this machine never wrote twice within one second")


def test_a_tracked_secret_stays_kept_out_in_every_later_snapshot(git_project: Path) -> None:
    """The kept index keeps the files the user tracks, secret-looking ones too: the second
    snapshot of the same tree lists a tracked .env as the first did, and is as clean."""
    (git_project / ".env").write_text("TOKEN=abc\n")
    git(git_project, "add", ".env")
    git(git_project, "commit", "-qm", "track a secret")
    snaps = [take_snapshot(git_project) for _ in range(3)]
    assert {(s.snapshot, s.dirty, tuple(s.kept_out), tuple(s.tracked_secrets)) for s in snaps} == {
        (snaps[0].snapshot, False, (".env",), (".env",))
    }
    assert ".env" not in git(git_project, "ls-tree", "-r", "--name-only", snaps[0].snapshot)


def _snapshot_view(
    root: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, watch: bool = False
) -> tuple[object, ...]:
    monkeypatch.setenv("XP_CACHE_DIR", str(cache))
    monkeypatch.setenv("XP_WATCH_MIN_FILES", "0" if watch else "1000000000")
    snap = take_snapshot(root)
    files = git(root, "ls-tree", "-r", "--full-tree", "-z", snap.snapshot).split("\0")
    return snap.dirty, snap.kept_out, snap.tracked_secrets, sorted(f for f in files if f)


def test_a_snapshot_from_the_kept_index_equals_one_from_scratch(
    git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Later snapshots stage only what `git status` says changed since the kept index
    (or nothing at all); after every kind of change, the snapshot is the one a fresh
    cache (a whole `git add -A`) takes: same files, same secrets kept out."""
    root = git_project
    (root / ".env").write_text("TRACKED=1\n")
    git(root, "add", ".env")
    git(root, "commit", "-qm", "tracked secret")
    edits = [
        lambda: None,
        lambda: (root / "train.py").write_text("print('edited')\n"),
        lambda: (root / "new_module.py").write_text("NEW = 1\n"),
        lambda: (root / "version.txt").unlink(),
        lambda: (root / "data" / "deep").mkdir(parents=True),
        lambda: [(root / "data" / "deep" / n).write_text(n) for n in ("a.py", "b.py", "id_rsa")],
        lambda: (root / ".env.local").write_text("SECRET=1\n"),
        lambda: (root / "weird [*] name?.py").write_text("W = 1\n"),
        lambda: (root / "new_module.py").write_text("NEW = 2\n"),
        lambda: (root / ".envs").mkdir(),
        lambda: (root / ".envs" / "inside.py").write_text("I = 1\n"),
        lambda: (root / "runs").mkdir(),
        lambda: (root / "runs" / "out.txt").write_text("run output\n"),
        lambda: (root / ".gitignore").write_text("/runs/\nnew_module.py\n"),  # now ignored
        lambda: (root / "scratch.txt").write_text("mine\n"),
        lambda: (root / ".git" / "info" / "exclude").write_text("scratch.txt\n"),
        lambda: (root / ".env").write_text("TRACKED=2\n"),
        lambda: (root / "data" / "deep" / "a.py").unlink(),
        lambda: git(root, "commit", "-qam", "commit the edits"),
    ]
    kept = tmp_path / "kept-cache"
    for number, edit in enumerate(edits):
        edit()
        incremental = _snapshot_view(root, kept, monkeypatch)
        scratch = _snapshot_view(root, tmp_path / f"fresh-cache-{number}", monkeypatch)
        assert incremental == scratch, f"after edit {number}"
    dirty, kept_out, tracked, files = incremental
    assert kept_out == [".env", ".env.local", "data/deep/id_rsa"] and tracked == [".env"]
    assert not any(name.endswith(("new_module.py", "out.txt", "inside.py", "scratch.txt"))
                   for name in files)  # fmt: skip
    assert any(name.endswith("\tweird [*] name?.py") for name in files)


def _stop_watchers(cache: Path) -> None:
    """Tests stop what they start: the watchers snapshots started, by PID (one still
    starting holds its lock before it writes its PID: waited for)."""
    deadline = time.monotonic() + 30
    for state in cache.glob("watch/*"):
        while True:
            with open(state / "lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break  # no watcher holds it
                except OSError:
                    pass
            try:
                os.kill(int((state / "pid").read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, f"a watcher of {state} outlived its kill"
            time.sleep(0.05)
        sock = watcher.socket_path(state)
        if sock is not None:
            sock.unlink(missing_ok=True)


def _wait_for_watcher(root: Path) -> None:
    deadline = time.monotonic() + 30
    while watcher.changes_since(root, None, []) is None:
        assert time.monotonic() < deadline, "no watcher answered within 30 s"
        time.sleep(0.05)


@pytest.fixture
def watched(git_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project whose snapshots ask a watcher what changed (any size is large here)."""
    monkeypatch.setenv("XP_WATCH_MIN_FILES", "0")
    monkeypatch.setenv("XP_CACHE_DIR", str(tmp_path / "kept-cache"))
    yield git_project
    _stop_watchers(tmp_path / "kept-cache")


def test_a_watched_project_stages_what_the_watcher_saw_change(
    watched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a watcher, git looks only at the paths that changed since the kept index (no
    git at all when none did), and every snapshot is still the one a fresh cache takes,
    through edits, new folders made and filled at once, deletions and a killed watcher."""
    root = watched
    seen: list[list[str] | None] = []
    asked = staging.worktree_changes

    def spy(*args: Any) -> staging.Changes | None:
        seen.append(None if args[5] is None else list(args[5][0]))
        return asked(*args)

    monkeypatch.setattr(staging, "worktree_changes", spy)
    take_snapshot(root)
    _wait_for_watcher(root)
    take_snapshot(root)  # the first answer with a token: git looks everywhere
    edits = [
        lambda: None,
        lambda: (root / "train.py").write_text("print('watched')\n"),
        lambda: [(root / "made" / "at" / "once").mkdir(parents=True),
                 (root / "made" / "at" / "once" / "m.py").write_text("M = 1\n"),
                 (root / "made" / "at" / "once" / ".env").write_text("S = 1\n")],
        lambda: (root / "version.txt").unlink(),
        lambda: (root / "made" / "at" / "once" / "m.py").write_text("M = 2\n"),
        lambda: shutil.rmtree(root / "made"),
        lambda: (root / ".env.local").write_text("SECRET=1\n"),
        lambda: (root / "notes.txt").write_text("mine\n"),
        lambda: (root / ".git" / "info" / "exclude").write_text("notes.txt\n"),
        lambda: _stop_watchers(tmp_path / "kept-cache"),
        lambda: (root / "train.py").write_text("print('unwatched')\n"),
        lambda: _wait_for_watcher(root),
        lambda: (root / "train.py").write_text("print('watched again')\n"),
    ]  # fmt: skip
    for number, edit in enumerate(edits):
        seen.clear()
        edit()
        incremental = _snapshot_view(root, tmp_path / "kept-cache", monkeypatch, watch=True)
        scratch = _snapshot_view(root, tmp_path / f"fresh-cache-{number}", monkeypatch)
        monkeypatch.setenv("XP_CACHE_DIR", str(tmp_path / "kept-cache"))
        monkeypatch.setenv("XP_WATCH_MIN_FILES", "0")
        assert incremental == scratch, f"after edit {number}"
        if number in (0, 1, 4, 6):  # the watcher answered with exactly what changed
            assert (
                seen[0]
                == [[], ["train.py"], ["made/at/once/m.py"], [".env.local"]][
                    [0, 1, 4, 6].index(number)
                ]
            ), f"after edit {number}: git was asked about {seen[0]}"
    assert incremental[1] == [".env.local"] and "train.py" in str(incremental[3])
    assert seen[0] is not None  # the restarted watcher answers again
