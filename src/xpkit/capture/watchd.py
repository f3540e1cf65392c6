"""The watcher process of capture/watcher.py: watches a project with inotify, numbers
its changes and answers "what changed since token T?" on a unix socket, each answer
given only once the asker's cookie file is seen (so it holds every earlier change)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from xpkit.capture.treewatch import (
    IN_CLOEXEC,
    IN_IGNORED,
    IN_ISDIR,
    IN_NONBLOCK,
    IN_Q_OVERFLOW,
    _libc,
    add_watch,
    events,
    ignored_folders,
)
from xpkit.capture.watcher import COOKIE_PREFIX
from xpkit.settings import XP_WATCH_IDLE

MAX_PATHS = 2000  # more changed paths than this: "unknown" (git checks every file)
IN_MOVED_TO, IN_MOVED_FROM, IN_CREATE, IN_DELETE_SELF, IN_MOVE_SELF = (
    0x80,
    0x40,
    0x100,
    0x400,
    0x800,
)


class Watcher:
    def __init__(self, root: Path, skip: set[str]) -> None:
        libc = _libc()
        if libc is None:
            raise OSError(errno.ENOSYS, "no inotify")
        self.libc, self.root = libc, str(root)
        self.skip = {os.path.join(self.root, path) for path in skip}  # given relative
        self.fd = -1
        self.seq = 0
        self.changed: dict[str, int] = {}
        self.cookies: dict[str, int] = {}  # cookies seen: their seq
        self._rebuild()

    def _rebuild(self) -> None:
        """A new epoch: every earlier token is unknown; watch the tree as it is now, on a
        new inotify descriptor (the old one's events name stale watches)."""
        self.epoch = os.urandom(6).hex()
        self.floor = self.seq
        self.changed.clear()
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.folders: dict[int, str] = {}
        self.git_wd = self._watch(os.path.join(self.root, ".git"))
        info = os.path.join(self.root, ".git", "info")
        self.info_wd = self._watch(info) if os.path.isdir(info) else -1
        ignored = ignored_folders(self.root)
        for base, dirs, _files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d != ".git" and os.path.join(base, d) not in ignored
                       and os.path.join(base, d) not in self.skip]  # fmt: skip
            self._watch(base)

    def _watch(self, folder: str) -> int:
        return add_watch(self.libc, self.fd, self.folders, folder)

    def read_events(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            lost = False
            for wd, mask, name in events(data):
                lost = not self._event(wd, mask, name) or lost
            if lost:
                self._rebuild()

    def _event(self, wd: int, mask: int, name: str) -> bool:
        """Record one event; False when the watcher lost track (a new epoch is due)."""
        if mask & IN_Q_OVERFLOW:
            return False
        if mask & IN_IGNORED:
            self.folders.pop(wd, None)
            return True
        folder = self.folders.get(wd)
        if folder is None:
            return True  # a folder watched before a rebuild
        self.seq += 1
        if wd == self.git_wd:
            if name.startswith(COOKIE_PREFIX) and mask & IN_CREATE:
                self.cookies[name] = self.seq
                with contextlib.suppress(OSError):  # the asker's, or one a kill left
                    os.unlink(os.path.join(folder, name))
            return name != "info"  # info/exclude: which files are ignored
        if wd == self.info_wd:
            return False
        if mask & (IN_MOVE_SELF | IN_DELETE_SELF):
            return folder != self.root  # the root moved or went: lost
        if mask & IN_ISDIR and mask & IN_MOVED_FROM:
            return False  # a folder moved: the paths of its watches are stale
        if name == ".gitignore":
            return False  # which folders are ignored changed
        path = os.path.relpath(os.path.join(folder, name), self.root)
        if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
            full = os.path.join(folder, name)
            if full in self.skip:
                return True
            try:  # files made before the watch: the folder's path stands for them
                for base, dirs, _files in os.walk(full):
                    dirs[:] = [d for d in dirs if os.path.join(base, d) not in self.skip]
                    self._watch(base)
            except OSError:
                return False  # out of watches (a new ignored folder?): watch the tree anew
        self.changed[path] = self.seq
        return len(self.changed) <= 50 * MAX_PATHS

    def answer(self, since: Any) -> dict[str, Any]:
        token = f"{self.epoch}:{self.seq}"
        epoch, _, at = str(since).partition(":")
        if epoch != self.epoch or not at.isdigit() or int(at) < self.floor:
            return {"token": token, "paths": None}
        paths = sorted(p for p, seq in self.changed.items() if seq > int(at))
        return {"token": token, "paths": paths if len(paths) <= MAX_PATHS else None}


def serve(root: Path, state: Path, sock_path: Path, skip: set[str]) -> None:
    """Watch `root` and answer on `state`/sock until idle for XP_WATCH_IDLE seconds."""
    state.mkdir(parents=True, exist_ok=True)
    lock = open(state / "lock", "a")  # noqa: SIM115 (held for the process's life)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another watcher runs
    try:
        watcher = Watcher(root, skip)
    except OSError:
        (state / "gave-up").touch()
        return
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(16)
    (state / "pid").write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a kill cleans up too
    try:
        _answer_until_idle(root, state, watcher, server)
    finally:  # gone idle (a kill -9 leaves them: the next watcher replaces them)
        with contextlib.suppress(OSError):
            sock_path.unlink()
        with contextlib.suppress(OSError):
            (state / "pid").unlink()


def _answer_until_idle(root: Path, state: Path, watcher: Watcher, server: socket.socket) -> None:
    waiting: dict[socket.socket, bytes] = {}  # connections with their question so far
    asked: list[tuple[socket.socket, dict[str, Any], float, str]] = []  # (.., when, epoch)
    last_question = time.monotonic()
    idle = XP_WATCH_IDLE.get()
    while time.monotonic() - last_question < idle and os.path.isdir(root / ".git"):
        readable: list[Any] = [watcher.fd, server, *waiting]  # a descriptor and sockets
        ready, _, _ = select.select(readable, [], [], 0.1 if asked else 5.0)
        if watcher.fd in ready:
            try:
                watcher.read_events()
            except OSError:
                (state / "gave-up").touch()
                return
        if server in ready:
            conn, _ = server.accept()
            waiting[conn] = b""
        for conn in [c for c in ready if c in waiting]:
            try:
                data = conn.recv(1 << 16)
            except OSError:
                data = b""
            waiting[conn] += data
            if not data or waiting[conn].endswith(b"\n"):
                try:
                    question = json.loads(waiting.pop(conn))
                    asked.append((conn, dict(question), time.monotonic(), watcher.epoch))
                except (ValueError, TypeError):
                    conn.close()
                last_question = time.monotonic()
        for item in list(asked):
            conn, asking, when, epoch = item
            cookie = str(asking.get("cookie"))
            if cookie in watcher.cookies:
                reply = watcher.answer(asking.get("since"))
            elif epoch != watcher.epoch:  # watching anew: "unknown", and a token of now
                reply = watcher.answer(None)
            elif time.monotonic() - when > 2.0:  # the cookie never came: no token
                reply = {"token": "", "paths": None}
            else:
                continue
            asked.remove(item)
            watcher.cookies.pop(cookie, None)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")
            conn.close()
        if len(watcher.cookies) > 256:  # cookies of snapshots that gave up waiting
            for name in sorted(watcher.cookies, key=watcher.cookies.__getitem__)[:128]:
                del watcher.cookies[name]


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), set(sys.argv[4:]))
