"""Process-wide hooks of the run `xp.init()` returns: finish at exit, flush on SIGTERM and
SIGINT (and record `killed`), the stop flag of a resumable run, and the copy of a
standalone run's stdout/stderr into its output.log."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from types import FrameType

from xpkit.settings import XP_STOP_SIGNAL
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module

if TYPE_CHECKING:
    from typing import IO, Any

    from xpkit.tracking import Run

_saved_streams: list[tuple[str, IO[str]]] = []


class _TeeStream:
    """Writes to the original stream and to output.log (standalone runs)."""

    def __init__(self, original: IO[str], log: IO[str]) -> None:
        self._original, self._log = original, log

    def write(self, text: str) -> int:
        self._log.write(text)
        self._log.flush()
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def capture_streams(run_dir: RunDir) -> None:
    log = open(run_dir.file(rd.OUTPUT_LOG), "a", encoding="utf-8")  # noqa: SIM115
    for attr in ("stdout", "stderr"):
        original = getattr(sys, attr)
        _saved_streams.append((attr, original))
        setattr(sys, attr, _TeeStream(original, log))


def restore_streams() -> None:
    while _saved_streams:
        attr, original = _saved_streams.pop()
        setattr(sys, attr, original)


def _install_stop_flag(run: Run) -> None:
    """A resumable run's stop signal sets `run.should_stop` instead of ending the
    program: the training loop saves a checkpoint and exits (SIGKILL follows after
    the kill grace if it does not)."""
    try:
        signum = signal.Signals[XP_STOP_SIGNAL.get()]
    except KeyError:
        signum = signal.SIGTERM

    def handler(sig: int, frame: FrameType | None) -> None:
        run._should_stop.set()
        run._flush_unless_interrupted()

    signal.signal(signum, handler)


def install_exit_hooks(run: Run) -> None:
    atexit.register(run.finish)
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        run._failed = True
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
            run._flush_unless_interrupted()
            if callable(previous):
                previous(sig, frame)
            elif previous == signal.SIG_DFL:
                if sig == signal.SIGTERM and run._owned:
                    run.finish("killed")
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)

        signal.signal(signum, handler)
    if run.checkpoint_dir is not None:
        _install_stop_flag(run)
