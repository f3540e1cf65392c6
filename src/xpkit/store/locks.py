"""Exclusive-create lock files and process liveness, for machine-local state."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xpkit.errors import StoreError

LOCK_TIMEOUT = 300.0


def pid_alive(pid: int, *, group: bool = False) -> bool:
    """Whether a process (or, with group=True, any process of a group) still exists."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_exclusive(path: Path, text: str = "") -> bool:
    """Create `path` holding `text` if it does not exist: True if this call created it.
    The one primitive behind trial numbers, locks and markers (atomic on local disks,
    NFSv3+ and sshfs); other errors (a full disk, no permission) are raised."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        if text:
            os.write(fd, text.encode())
    finally:
        os.close(fd)
    return True


@contextmanager
def exclusive_lock(lock: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold `lock` (a file created exclusively) for the `with` block. A lock whose
    holder died on this host is broken; locks are meant for local disks."""
    deadline = time.monotonic() + timeout
    me = f"{os.uname().nodename} {os.getpid()}"  # socket.gethostname(), without socket
    while True:
        if create_exclusive(lock, me):
            break
        if _stale(lock):
            lock.unlink(missing_ok=True)
            continue
        if time.monotonic() > deadline:
            raise StoreError(f"timed out after {timeout:.0f} s waiting for lock {lock}") from None
        time.sleep(0.02)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _stale(lock: Path) -> bool:
    """A lock whose holder died on this host. An unreadable one is being written."""
    try:
        host, pid = lock.read_text().split()
    except (OSError, ValueError):
        return False
    return host == os.uname().nodename and not pid_alive(int(pid))
