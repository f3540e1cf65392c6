"""Materialize a snapshot as a git worktree, shared by every run of that snapshot.

`<workdir>/<sha>/` is a detached worktree of the snapshot with the project's `link`
folders symlinked in. Each run using it holds a file in `<sha>.users/`; the last one
to leave removes the worktree. A small lock file (exclusive create) serializes the
create/remove decisions between processes of this machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xpkit.capture.git import git
from xpkit.errors import RunError

LOCK_TIMEOUT = 120.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    deadline = time.monotonic() + LOCK_TIMEOUT
    me = f"{socket.gethostname()} {os.getpid()}"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, me.encode())
            os.close(fd)
            break
        except FileExistsError:
            if _stale(lock):
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
                continue
            if time.monotonic() > deadline:
                raise RunError(f"timed out waiting for workspace lock {lock}") from None
            time.sleep(0.02)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _stale(lock: Path) -> bool:
    try:
        host, pid = lock.read_text().split()
    except (OSError, ValueError):
        return False  # being written right now
    return host == socket.gethostname() and not _pid_alive(int(pid))


class Workspace:
    """The worktrees of one project under its `workdir`."""

    def __init__(self, project: Path, workdir: Path, link: tuple[str, ...] = ()) -> None:
        self.project = project
        self.workdir = workdir
        self.link = link

    def path(self, sha: str) -> Path:
        return self.workdir / sha[:16]

    def acquire(self, sha: str, user: str) -> Path:
        """The worktree of `sha`, created if needed, registered as used by `user`."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create workdir {self.workdir}: {e.strerror}") from e
        tree = self.path(sha)
        users = tree.with_name(tree.name + ".users")
        ready = tree.with_name(tree.name + ".ready")
        with _locked(tree.with_name(tree.name + ".lock")):
            if not ready.exists():
                self._remove_tree(tree)
                git(self.project, "worktree", "add", "--detach", "--force", str(tree), sha)
                self._link_folders(tree)
                ready.touch()
            users.mkdir(exist_ok=True)
            (users / user).touch()
        return tree

    def release(self, sha: str, user: str) -> None:
        """Drop `user`'s claim; the last user removes the worktree."""
        tree = self.path(sha)
        users = tree.with_name(tree.name + ".users")
        with _locked(tree.with_name(tree.name + ".lock")):
            (users / user).unlink(missing_ok=True)
            if users.exists() and any(users.iterdir()):
                return
            tree.with_name(tree.name + ".ready").unlink(missing_ok=True)
            self._remove_tree(tree)
            shutil.rmtree(users, ignore_errors=True)

    def _remove_tree(self, tree: Path) -> None:
        if tree.exists():
            git(self.project, "worktree", "remove", "--force", str(tree), check=False)
            shutil.rmtree(tree, ignore_errors=True)
        git(self.project, "worktree", "prune", check=False)

    def _link_folders(self, tree: Path) -> None:
        for name in self.link:
            source = self.project / name
            target = tree / name
            if not source.exists():
                warnings.warn(
                    f"link folder '{name}' does not exist in {self.project}; not linked",
                    stacklevel=3,
                )
                continue
            if target.exists() or target.is_symlink():
                warnings.warn(
                    f"link folder '{name}' is part of the snapshot; the snapshot's copy is used",
                    stacklevel=3,
                )
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
