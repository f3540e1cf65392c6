"""Claims: who holds a run and is its only writer of run.json (the submitter until the
run is queued, then the worker, `xp run` or `xp cancel` that takes it). A claim is
created whole and exclusively (a hard link of a finished temporary file) and names
host, pid and the process's start time, so anyone can tell a dead holder from a live
one; on another machine, by that scheduler's heartbeat file in the runs root.
"""

from __future__ import annotations

import json
import os
import time
from collections import namedtuple
from pathlib import Path

from xpkit import names
from xpkit.settings import XP_HEARTBEAT_TIMEOUT
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any


def workers_dir(runs_root: Path) -> Path:
    """Each scheduler's registration, rewritten every few seconds: its heartbeat."""
    return runs_root / names.META_DIR / "workers"


class Holder(namedtuple("Holder", "kind host pid pid_start worker")):
    """A process that holds runs: kind (worker, ray, submit, run, cancel, requeue), host,
    pid, pid_start (float or None), worker (the scheduler's id, host:pid, when a
    scheduler holds it). A named tuple: `import dataclasses` costs every run ~8 ms."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "host": self.host,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "worker": self.worker,
            "time": time.time(),
        }


def process_start(pid: int) -> float | None:
    """The start time of process `pid` (epoch seconds, psutil's value), None if gone.
    On Linux read from /proc: importing psutil costs every `xp submit` 25 ms."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after "pid (comm)"
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # Linux: the process is gone
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")


_ME: dict[str, Holder] = {}


def me(kind: str) -> Holder:
    """This process as a holder of kind `kind`."""
    key = f"{kind}:{os.getpid()}"  # a fork gets its own
    if key not in _ME:
        pid = os.getpid()
        host = os.uname().nodename
        _ME[key] = Holder(kind, host, pid, process_start(pid), f"{host}:{pid}")
    return _ME[key]


def read_claim(run_dir: RunDir) -> dict[str, Any] | None:
    """The claim of a run, or None. Claims of older xpkit versions ('host:pid') too."""
    path = run_dir.file(rd.CLAIM)
    try:
        text = path.read_text()
        written = path.stat().st_mtime
    except OSError:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            return data
    except ValueError:
        pass
    if not text.strip():  # being written (a filesystem without hard links): young, alive
        return {"kind": "unknown", "host": "?", "pid": 0, "pid_start": None, "worker": "",
                "time": written}  # fmt: skip
    host, _, pid = text.strip().split()[-1].rpartition(":")
    return {
        "kind": "worker",
        "host": host,
        "pid": int(pid) if pid.isdigit() else 0,
        "pid_start": None,
        "worker": text.strip(),
        "time": 0.0,
    }


def create_claim(run_dir: RunDir, holder: Holder, *, replace: bool = False) -> bool:
    """Write the claim whole, then link it into place: exclusive unless `replace`
    (taking over from a dead holder, under the recovery lock)."""
    temp = run_dir.path / f".claim.{os.getpid()}.{os.urandom(3).hex()}.tmp"
    try:
        temp.write_text(json.dumps(holder.to_json()) + "\n")
    except FileNotFoundError:
        return False
    try:
        if replace:
            os.replace(temp, run_dir.file(rd.CLAIM))
            return True
        try:
            os.link(temp, run_dir.file(rd.CLAIM))
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some FUSE mounts): exclusive create
            fd = os.open(run_dir.file(rd.CLAIM), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(temp.read_text())
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)


def holder_alive(runs_root: Path, run_dir: RunDir, claim_info: dict[str, Any]) -> bool:
    """Whether the holder of a claim still lives: by pid and start time on this host;
    on another host by its scheduler's heartbeat, the run's heartbeat, or a young claim."""
    timeout = XP_HEARTBEAT_TIMEOUT.get()
    if claim_info.get("host") == os.uname().nodename:
        return _alive_here(claim_info)
    worker = str(claim_info.get("worker") or "")
    beat = workers_dir(runs_root) / (worker.replace(":", "_") + ".json")
    for path in (beat, run_dir.file(rd.HEARTBEAT)):
        try:
            if time.time() - path.stat().st_mtime < timeout:
                return True
        except OSError:
            continue
    return time.time() - float(claim_info.get("time") or 0) < timeout


def holder_died_here(run_dir: RunDir) -> bool:
    """Whether the run's holder (`xp run`, a worker, a Ray dispatcher) was a process on
    this host that is gone, or whose pid another process now has: a kill -9'ed holder
    shows at once, not once the run's heartbeat is stale. Another host's: not decided."""
    claim = read_claim(run_dir)
    if claim is None or claim.get("host") != os.uname().nodename:
        return False
    return not _alive_here(claim)


def _alive_here(claim_info: dict[str, Any]) -> bool:
    pid = int(claim_info.get("pid") or 0)
    started = process_start(pid) if pid > 0 else None
    if started is None:
        return False
    recorded = claim_info.get("pid_start")
    return recorded is None or abs(float(recorded) - started) < 1.0  # else a reused pid
