"""The threads that watch a running child for the runner: `OutputTee` copies its output
to the terminal and output.log (spooling to local disk when output.log cannot be
written), `Monitor` beats, flushes harvested metrics, acts on a `.cancel` intent and
measures the peak RSS of the process tree."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from xpkit.execute.harvest import Harvester
from xpkit.settings import XP_HEARTBEAT_INTERVAL
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import IO


class OutputTee(threading.Thread):
    """Copy the child's output to the terminal and to output.log as it arrives.

    If output.log cannot be written (disk full, runs root unmounted), the output goes
    on into a spool file on local disk, which the runner appends once it can."""

    def __init__(
        self,
        fd: int,
        log: IO[bytes],
        echo: IO[bytes] | None,
        harvester: Harvester,
        spool: Path,
    ) -> None:
        super().__init__(daemon=True)
        self.fd, self.log, self.echo, self.harvester = fd, log, echo, harvester
        self.spool_path = spool
        self.spool: IO[bytes] | None = None
        self.error: str | None = None
        self.dropped = 0  # bytes of output neither output.log nor the spool could take

    def _keep(self, chunk: bytes) -> None:
        if self.spool is None:
            try:
                while chunk:  # an unbuffered write may take only part of the chunk
                    chunk = chunk[self.log.write(chunk) or 0 :]
                return
            except OSError as e:
                self.error = f"cannot write output.log: {e.strerror or e}"
                print(
                    f"xp: error: {self.error}; keeping the output in {self.spool_path} "
                    "until it can be written",
                    file=sys.stderr,
                )
                try:
                    self.spool_path.parent.mkdir(parents=True, exist_ok=True)
                    self.spool = open(self.spool_path, "ab")  # noqa: SIM115
                except OSError:
                    self.spool = open(os.devnull, "ab")  # noqa: SIM115
        try:
            self.spool.write(chunk)
        except OSError as e:  # the local disk is full too: drop the output, keep the run going
            if not self.dropped:
                print(
                    f"xp: error: cannot keep the output in {self.spool_path} either "
                    f"({e.strerror or e}); dropping it",
                    file=sys.stderr,
                )
            self.dropped += len(chunk)

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self._keep(chunk)
            self.harvester.feed(chunk)
            if self.echo is not None:
                try:
                    self.echo.write(chunk)
                    self.echo.flush()
                except (OSError, ValueError):
                    self.echo = None  # terminal gone; keep logging
        os.close(self.fd)
        if self.spool is not None:
            self.spool.close()


class Monitor(threading.Thread):
    """Heartbeat every XP_HEARTBEAT_INTERVAL; peak RSS of the process tree each second."""

    def __init__(
        self, run_dir: RunDir, pid: int, harvester: Harvester, on_cancel: Callable[[], None]
    ) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.pid, self.harvester = run_dir, pid, harvester
        self.on_cancel = on_cancel
        self.stop = threading.Event()
        self.peak_rss = 0
        self.gone = False  # the run directory could not be reached at the last look

    def run(self) -> None:
        interval = XP_HEARTBEAT_INTERVAL.get()
        last_beat = 0.0
        while not self.stop.is_set():
            try:
                if time.monotonic() - last_beat >= interval:
                    self.run_dir.beat()
                    self.harvester.scan_files()
                    last_beat = time.monotonic()
                self.harvester.flush()
                if self.run_dir.file(rd.CANCEL).exists():
                    self.on_cancel()
                if self.gone:
                    print(f"xp: {self.run_dir.path} is back", file=sys.stderr)
                    self.gone = False
            except OSError as e:
                if not self.gone:
                    print(
                        f"xp: warning: cannot reach {self.run_dir.path} ({e.strerror or e}): "
                        "runs root unmounted, renamed or full? The run goes on; its output "
                        "is kept until the folder is back.",
                        file=sys.stderr,
                    )
                self.gone = True
            self.peak_rss = max(self.peak_rss, tree_rss(self.pid))
            self.stop.wait(min(1.0, interval))


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tree_rss(pid: int) -> int:
    """Resident bytes of process `pid` and all its descendants (0 once it is gone). On
    Linux from /proc, which is what psutil reads too, without importing psutil (~12 ms
    of every `xp run`); elsewhere psutil."""
    try:
        return _proc_tree_rss(pid)
    except (OSError, ValueError):
        pass
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in tree if p.is_running())
    except psutil.Error:
        return 0


def _proc_tree_rss(pid: int) -> int:
    if not os.path.isdir(f"/proc/{os.getpid()}/task"):
        raise OSError("no /proc")
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * _PAGE
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
    return total
