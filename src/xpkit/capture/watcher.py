"""A watcher process per large project that tells each snapshot which paths changed
since the last one, so that `git status` looks at those paths only instead of calling
lstat on every tracked file (~80 ms at 100,000 files). DESIGN.md, "Snapshots that cost
what changed".

The watcher (`python -m xpkit.capture.watchd <root> <state> <socket> [skip...]`, started
by the first snapshot of a project with XP_WATCH_MIN_FILES tracked files, gone after
XP_WATCH_IDLE seconds without a question) watches every folder git does not ignore with
inotify and numbers the changes. A snapshot asks "what changed since token T?":

- It creates a cookie file in `.git` first and the watcher answers only once it has
  read the cookie's event, so every change made before the question is in the answer.
- The answer is a new token and the paths changed since T, or "unknown" (null) when T
  is not one of this watcher's tokens (another watcher, one restarted) or the watcher
  lost track (inotify overflowed, a folder moved, a .gitignore changed, too many
  changes): the snapshot then asks git about every file, as without a watcher.
- No answer (no watcher, one killed, one too slow) is "unknown" too, and a watcher is
  started for the next snapshot. A watcher that cannot watch (no inotify, out of
  watches) exits, and leaves a note that keeps others from starting for an hour.

The watcher is a cache: kill -9 it at any moment and the next snapshot is only slower."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path

from xpkit.settings import XP_CACHE_DIR, XP_WATCH_MIN_FILES
from xpkit.values import path_digest

COOKIE_PREFIX = "xp-watch-cookie-"
GAVE_UP_S = 3600.0


def large(index: Path) -> bool:
    """Whether the project's index holds XP_WATCH_MIN_FILES entries (its header says)."""
    try:
        with open(index, "rb") as f:
            header = f.read(12)
    except OSError:
        return False
    return len(header) == 12 and int.from_bytes(header[8:], "big") >= XP_WATCH_MIN_FILES.get()


def state_folder(root: Path) -> Path:
    return XP_CACHE_DIR.get() / "watch" / path_digest(root, 24)


def socket_path(state: Path) -> Path | None:
    """Where the watcher of `state` listens: a unix socket's path must be short (108
    bytes), so in the user's runtime folder, or a private folder in /tmp; None when
    that folder is not this user's alone."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or ""
    folder = Path(runtime) if runtime.startswith("/") else Path(f"/tmp/xpkit-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return folder / f"xp-watch-{path_digest(state)}.sock"


def changes_since(root: Path, token: str | None, skip: list[str],
                  timeout: float = 1.0) -> tuple[str, list[str] | None] | None:  # fmt: skip
    """(a new token, the paths relative to `root` changed since `token` or None when
    unknown), or None when no watcher answered (one is started for the next time)."""
    import socket  # only large projects: ~2 ms of every `xp run` otherwise

    state = state_folder(root)
    git_dir = root / ".git"
    sock = socket_path(state)
    if not git_dir.is_dir() or sock is None:
        return None  # a linked worktree or a submodule, or no private folder: no watcher
    cookie = git_dir / f"{COOKIE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            os.close(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn.sendall(json.dumps({"since": token, "cookie": cookie.name}).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = conn.recv(1 << 16)
                if not chunk:
                    raise OSError(errno.ECONNRESET, "the watcher hung up")
                reply += chunk
        answer = json.loads(reply)
        paths = answer["paths"]
        return str(answer["token"]), None if paths is None else [str(p) for p in paths]
    except (OSError, ValueError, KeyError, TypeError):
        _start(root, state, sock, skip)
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(cookie)


def _start(root: Path, state: Path, sock: Path, skip: list[str]) -> None:
    """Start a watcher unless one runs, is starting, or gave up on this project lately."""
    try:
        gave_up = (state / "gave-up").stat().st_mtime
        if time.time() - gave_up < GAVE_UP_S:
            return
    except OSError:
        pass
    import fcntl
    import subprocess
    import sys

    try:
        state.mkdir(parents=True, exist_ok=True)
        with open(state / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a watcher runs
    except OSError:
        return
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [sys.executable, "-m", "xpkit.capture.watchd", str(root), str(state), str(sock),
             *skip],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, cwd="/",
        )  # fmt: skip
