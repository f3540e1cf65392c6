"""One controller per sweep, on any machine sharing the runs root: a lock file
`<runs>/.xp/sweeps/<expid>.controller` naming host, pid and process start, touched
every loop. A holder that died on this host (pid gone or reused) or whose file went
unchanged for STALE seconds on another host no longer holds it."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import QueueError
from xpkit.store.claims import process_start
from xpkit.store.locks import create_exclusive, pid_alive

STALE = 60.0


def lock_path(runs_root: Path, expid: str) -> Path:
    return runs_root / names.META_DIR / "sweeps" / f"{expid}.controller"


def holder(path: Path) -> dict[str, Any] | None:
    """The live controller holding `path`, or None."""
    try:
        data = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"host": "?", "pid": 0}  # being written: alive
    if not isinstance(data, dict):
        return None
    if data.get("host") == socket.gethostname():
        pid = int(data.get("pid") or 0)
        started = data.get("pid_start")
        if not pid_alive(pid) or _zombie(pid):
            return None
        if started is not None and abs((process_start(pid) or 0) - float(started)) > 1.0:
            return None  # the pid was reused
        return data
    return data if age < STALE else None


def _zombie(pid: int) -> bool:
    """A controller killed whose parent has not reaped it yet holds nothing."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class ControllerLock:
    def __init__(self, runs_root: Path, expid: str, file: str) -> None:
        self.path = lock_path(runs_root, expid)
        self.file = file

    def __enter__(self) -> ControllerLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": process_start(os.getpid()),
            "since": time.time(),
        }
        for _ in range(3):
            if create_exclusive(self.path, json.dumps(me)):
                return self
            other = holder(self.path)
            if other is not None:
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(other.get("since") or 0))
                raise QueueError(
                    f"{self.file}: its sweep is already controlled by pid {other.get('pid')} on "
                    f"{other.get('host')} (since {since}); `xp sweep {self.file} --status` shows "
                    "its progress, stopping that process stops the controller"
                )
            self.path.unlink(missing_ok=True)  # its holder died
        raise QueueError(f"{self.path}: cannot take the sweep's controller lock")

    def beat(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
