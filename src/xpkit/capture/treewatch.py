"""Whether anything a snapshot depends on changed since a moment: Linux inotify, read
without blocking in the caller's thread, so an edit saved before the look is seen.

Watched: every folder of the working tree that git does not ignore, `.git` itself (HEAD,
packed refs) and `.git/refs/heads` (commits). Not watched: the runs root, the
worktrees, git's object store and xpkit's own snapshot refs (taking a snapshot must not
count as a change). Where inotify is missing or out of watches, `changed()` is always
True: callers then take a new snapshot each time, as without the watch.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

_MASK = (0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800)  # fmt: skip
# IN_MODIFY IN_ATTRIB IN_CLOSE_WRITE IN_MOVED_FROM IN_MOVED_TO IN_CREATE IN_DELETE
# IN_DELETE_SELF IN_MOVE_SELF
IN_ISDIR, IN_Q_OVERFLOW, IN_IGNORED = 0x40000000, 0x4000, 0x8000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
MAX_WATCHES = 20_000  # beyond this many folders, no watch: a new snapshot each time


def add_watch(libc: ctypes.CDLL, fd: int, folders: dict[int, str], folder: str) -> int:
    """Watch `folder` on inotify `fd`, recorded in `folders` (at most MAX_WATCHES)."""
    if len(folders) >= MAX_WATCHES:
        raise OSError(errno.ENOSPC, "too many folders to watch")
    wd = libc.inotify_add_watch(fd, folder.encode(), _MASK)
    if wd < 0:
        raise OSError(ctypes.get_errno(), f"cannot watch {folder}")
    folders[wd] = folder
    return wd


def events(data: bytes) -> Iterator[tuple[int, int, str]]:
    """The (watch, mask, name) of each inotify event in `data`."""
    offset = 0
    while offset < len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        start = offset + _EVENT.size
        offset = start + length
        yield wd, mask, os.fsdecode(data[start:offset].rstrip(b"\0"))


def ignored_folders(root: str) -> set[str]:
    """The folders git ignores under `root`, as absolute paths (their changes cannot
    change a snapshot)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"],
        cwd=root, capture_output=True, check=False, timeout=60,
    ).stdout  # fmt: skip
    return {os.path.join(root, p.rstrip("/")) for p in os.fsdecode(listing).split("\0")
            if p.endswith("/")}  # fmt: skip


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class TreeWatch:
    """Created before a snapshot is taken; `changed()` says whether the snapshot may no
    longer be the working tree."""

    def __init__(self, root: Path, skip: tuple[Path, ...] = ()) -> None:
        self.root = root
        self.skip = {str(p) for p in skip}
        self.fd = -1
        self.dirty = True
        self.folders: dict[int, str] = {}
        libc = _libc()
        if libc is None:
            return
        self.libc = libc
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return
        self.fd = fd
        try:
            ignored = ignored_folders(str(root))
            git = root / ".git"
            self._add(str(git))
            for base, _dirs, _files in os.walk(git / "refs" / "heads"):
                self._add(base)
            for base, dirs, _files in os.walk(root):
                dirs[:] = [d for d in dirs if d != ".git" and not self._skipped(base, d, ignored)]
                self._add(base)
            self.dirty = False
        except OSError:
            self.close()

    def _skipped(self, base: str, name: str, ignored: set[str]) -> bool:
        path = os.path.join(base, name)
        return path in ignored or path in self.skip

    def _add(self, folder: str) -> None:
        add_watch(self.libc, self.fd, self.folders, folder)

    def changed(self) -> bool:
        """Whether something was written, created, removed or moved since the watch
        began (and stays so once it was)."""
        if self.dirty or self.fd < 0:
            return True
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.dirty
            except OSError:
                self.dirty = True
                return True
            for wd, mask, name in events(data):
                if self._matters(wd, mask, name):
                    self.dirty = True

    def _matters(self, wd: int, mask: int, name: str) -> bool:
        if mask & IN_Q_OVERFLOW:
            return True
        if mask & IN_IGNORED:
            return False
        folder = self.folders.get(wd)
        if folder is None:
            return True
        path = os.path.join(folder, name) if name else folder
        if folder == str(self.root / ".git"):
            # HEAD and the refs are the snapshot's parent. Not the index (a snapshot takes
            # the working tree whatever is staged; `git status` rewrites it), nor git's
            # lock files, logs or FETCH_HEAD.
            return name in ("HEAD", "packed-refs", "info") or name == ""
        return path not in self.skip

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.dirty = True

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit `os` may be gone; the kernel closes it
            pass
