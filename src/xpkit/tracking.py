"""The in-process API used by training code: `run = xp.init(); run.log({...})`.

Under `xp run`, `init()` attaches to the run the runner created (XP_RUN_DIR). Started
directly (`python train.py`), it creates a standalone run with the same snapshot and
capture, and marks it finished or failed at exit.

Logged metrics are kept in memory and appended to metrics.jsonl every XP_FLUSH_INTERVAL
(0.25 s) and whenever about FLUSH_BYTES (64 KiB) of lines are pending, at exit and on
SIGTERM/SIGINT, so a kill -9 loses at most the last 0.25 s or 64 KiB of points, whichever
is less. summary.json is rewritten at most every SUMMARY_INTERVAL. The current run is a
ContextVar, not a module global.

A write that fails (disk full, file-size limit, runs root gone) never raises into the
training loop: the bytes not written stay in memory (up to MAX_UNWRITTEN) and are
retried at every flush; if they still cannot be written when the run ends, the run is
marked failed with the reason. What reached the file before stays intact.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from operator import countOf
from pathlib import Path
from types import TracebackType

from xpkit import metric_lines, process_hooks
from xpkit.errors import RunError
from xpkit.settings import (
    XP_ATTEMPT,
    XP_CKPT_DIR,
    XP_FLUSH_INTERVAL,
    XP_HEARTBEAT_INTERVAL,
    XP_RUN_DIR,
    XP_RUNNER_PID,
)
from xpkit.store import rundir as rd
from xpkit.store.locks import pid_alive
from xpkit.store.rundir import RunDir

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module
if TYPE_CHECKING:
    from typing import Any

_current_run: ContextVar[Run | None] = ContextVar("xpkit_current_run", default=None)
MAX_UNWRITTEN = 256 * 2**20  # bytes of metric lines kept while writes fail
FLUSH_BYTES = 64 * 1024  # pending metric lines written from the logging thread past this
SUMMARY_INTERVAL = 1.0  # seconds between rewrites of summary.json while logging
# The hot path of log() reads these as globals, not as module attributes.
_STEP_MIN, _STEP_MAX = rd.STEP_MIN, rd.STEP_MAX
# Ints a float holds exactly take the fast path (the lines' %.17g writes them as they
# are); bigger ones are written by the slow path, which keeps every digit.
_EXACT_INT = 2**53
_now = time.time


def current_run() -> Run | None:
    """The run `init()` started in this context, if any."""
    return _current_run.get()


class Summary(dict[str, "Any"]):  # a string: typing is not imported at run time
    """`run.summary`: the last value of each metric unless set explicitly."""

    def __init__(self, owner: Run) -> None:
        super().__init__()
        self._owner = owner

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._owner._explicit[key] = value
        self._owner._summary_dirty = True


class Run:
    """A run as seen from inside the training program."""

    def __init__(self, run_dir: RunDir, *, owned: bool,
                 config: dict[str, Any] | None = None) -> None:  # fmt: skip
        """`config`: the config.json of a run this process just created (with its
        run.json in `run_dir.created`); else both are read, with the summary so far."""
        self._run_dir = run_dir
        self._owned = owned  # standalone: this process also owns status and heartbeat
        info = run_dir.created if config is not None else None
        if info is None:
            info = run_dir.read_run()
            config = run_dir.read_optional(rd.CONFIG_JSON, {}) or {}
            existing = run_dir.read_optional(rd.SUMMARY_JSON, {}) or {}
        else:
            existing = {}
        self.name: str = info["name"]
        self.id: str = info["experiment_id"]
        self.trial: int = info["trial"]
        self.config: dict[str, Any] = config  # type: ignore[assignment]
        self._explicit: dict[str, Any] = {}
        self._last: dict[str, Any] = {}
        self.summary = Summary(self)
        dict.update(self.summary, existing)
        self._summary_dirty = False
        # Rows not yet written, per set of metric names (see metric_lines.Stream).
        self._streams: dict[tuple[str, ...], metric_lines.Stream] = {}
        # Every stream logged to, the one logged to last at the end: the summary's order.
        self._recent: dict[metric_lines.Stream, None] = {}
        self._last_stream: metric_lines.Stream | None = None
        self._seq = 0  # rows logged; pending lines are written when it reaches _flush_at
        self._flush_at = FLUSH_BYTES // 64
        # The time written on metric lines, to the millisecond, formatted once per
        # millisecond instead of once per call (a float format is ~0.2 µs of a log call).
        self._time_next = 0.0
        self._time_text = b"0.000"
        self.run_id: str = str(info.get("id") or self.name)
        self.attempt: int = XP_ATTEMPT.get() if not owned else 1
        self.resumed: bool = self.attempt > 1
        self.checkpoint_dir: Path | None = XP_CKPT_DIR.get() if not owned else None
        # Set by the stop signal of a resumable run: save a checkpoint and exit.
        self._should_stop = threading.Event()
        # A later attempt continues the steps of the earlier ones; a step logged again
        # (the program resumed from an older checkpoint) keeps its first value, as W&B does.
        self._floor = run_dir.last_step() if self.resumed else rd.NO_STEP
        self._step = self._floor + 1 if self._floor != rd.NO_STEP else 0
        self._warned_floor = False
        self._flush_interval = XP_FLUSH_INTERVAL.get()
        self._summary_written = 0.0  # monotonic time of the last summary.json
        # Reentrant, and its owner known: a signal handler may interrupt a flush in the
        # main thread, and must neither deadlock on the lock nor flush into its middle.
        self._flush_lock = threading.RLock()
        self._flush_owner: int | None = None
        self._metrics_fd: int | None = os.open(
            run_dir.file(rd.METRICS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        self._unwritten = bytearray()  # encoded lines not yet in metrics.jsonl
        self._dropped = 0  # bytes given up on (over MAX_UNWRITTEN)
        self.write_error: str | None = None  # why the last write failed, until one works
        self._closed = False
        self._failed = False
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True, name="xp-flush")
        self._flusher.start()

    # --- public API -----------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self._run_dir.path

    @property
    def artifacts(self) -> Path:
        path = self._run_dir.file(rd.ARTIFACTS)
        path.mkdir(exist_ok=True)
        return path

    @property
    def should_stop(self) -> bool:
        """True once the run was asked to stop (a resumable run's stop signal): save a
        checkpoint in `checkpoint_dir` and exit; the next attempt resumes from it."""
        return self._should_stop.is_set()

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metric values at `step` (default: one more than the last step)."""
        if step is None:
            step = self._step
        if type(step) is not int or not self._floor < step <= _STEP_MAX:
            self._refuse_step(step)
            return
        self._step = step + 1
        stream = self._last_stream
        if len(metrics) == 1:  # the most common call: no tuples of names and values (~20%)
            (key,) = metrics
            value = metrics[key]
            if stream is None or key != stream.only:
                stream = self._switch_stream((key,))
            if (type(value) is not float or value - value != 0.0) and not (
                type(value) is int and -_EXACT_INT <= value <= _EXACT_INT
            ):
                self._log_slow(stream, (key,), (value,), step)
                return
            now = _now()
            if now >= self._time_next:
                self._time_next = now + 0.001
                self._time_text = b"%.3f" % now
            stream.rows.extend((step, self._time_text, value))
            self._seq += 1
            if self._seq >= self._flush_at:  # ~FLUSH_BYTES pending: bound what a kill loses
                self._flush_lines(stream.line_bytes)
            return
        keys = tuple(metrics)
        if stream is None or keys != stream.keys:  # another set of metrics than last time
            stream = self._switch_stream(keys)
        values = metrics.values()
        # Hot path: plain finite floats and ints go into the stream as they are, formatted
        # in bulk by the flush; anything else is converted (or refused) by _log_slow. Many
        # values are checked in C: all floats, and a finite sum (an overflow takes the loop).
        if not (
            len(keys) > 8
            and countOf(map(type, values), float) == len(keys)
            and (total := sum(values)) - total == 0.0
        ):
            for value in values:
                if type(value) is not float or value - value != 0.0:
                    if type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
                        continue
                    self._log_slow(stream, keys, values, step)
                    return
        now = _now()
        if now >= self._time_next:
            self._time_next = now + 0.001
            self._time_text = b"%.3f" % now
        stream.rows.extend((step, self._time_text, *values))
        self._seq += 1
        if self._seq >= self._flush_at:  # ~FLUSH_BYTES pending: bound what a kill loses
            self._flush_lines(stream.line_bytes)

    def _log_slow(self, stream: metric_lines.Stream, keys: tuple[str, ...],
                  values: Any, step: int) -> None:  # fmt: skip
        """log() of values that need converting (or refusing): see metric_lines.slow_row."""
        stream.rows.extend(metric_lines.slow_row(keys, tuple(values), step))
        self._seq += 1
        if self._seq >= self._flush_at:
            self._flush_lines(stream.line_bytes)

    def _refuse_step(self, step: Any) -> None:
        """log() at a step that is not an int in range (an error), or at or below the
        last step an earlier attempt logged (kept out, with one warning)."""
        if type(step) is not int or not _STEP_MIN <= step <= _STEP_MAX:
            raise RunError(
                f"run.log: step must be an int between -2**63 and 2**63-1, got "
                f"{type(step).__name__} {step!r}"
            )
        self._step = step + 1
        if not self._warned_floor:
            self._warned_floor = True
            _warn(
                f"xp: attempt {self.attempt} of {self.name} logs step {step}, which an "
                f"earlier attempt logged (up to {self._floor}); steps up to "
                f"{self._floor} keep their first values"
            )

    def _switch_stream(self, keys: tuple[str, ...]) -> metric_lines.Stream:
        """The stream of this set of metrics, which becomes the newest in the summary's
        order (its values win over older sets' values of the same names)."""
        stream = self._streams.get(keys)
        if stream is None:
            if self._closed:
                raise RunError(f"run {self.name} is finished; log() after finish() is lost")
            stream = self._streams.setdefault(keys, metric_lines.Stream(keys))  # checks names
        self._last_stream = stream
        self._recent.pop(stream, None)
        self._recent[stream] = None
        return stream

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Merge values into the run's config and persist config.json."""
        self.config.update(config)
        # Atomic, not fsynced: the end of the run is (by its runner, or finish() here),
        # and on ext4 that commits this rename too; an fsync here would wait on the
        # file system's journal while the program starts (~1-5 ms of every run).
        self._run_dir.write_json(rd.CONFIG_JSON, self.config, durable=False)

    def log_checkpoint(self, path: str | os.PathLike[str], step: int | None = None,
                       **info: Any) -> None:  # fmt: skip
        """Record that a checkpoint was saved at `path` (at `step`): `xp show` lists
        them, newest last. A path inside the run directory is kept relative to it."""
        where = Path(path).absolute()
        try:
            shown = str(where.relative_to(self.dir.absolute()))
        except ValueError:
            shown = str(where)
        entry = {"path": shown, "step": step, "time": rd.now(), "attempt": self.attempt}
        entry.update({key: metric_lines.checkpoint_value(value) for key, value in info.items()})
        line = (json.dumps(entry, allow_nan=False, default=str) + "\n").encode()
        try:  # one O_APPEND write: a kill leaves whole lines, at most a torn last one
            fd = os.open(
                self._run_dir.file(rd.CHECKPOINTS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as e:
            _warn(f"xp: error: run {self.name}: cannot record checkpoint {shown}: {e.strerror}")

    def mark_failed(self) -> None:
        """The training failed (a framework reported it): a standalone run ends
        `failed`; under `xp run` the program's exit status decides."""
        self._failed = True

    def flush(self) -> None:
        """Append pending metric lines and rewrite summary.json if it changed."""
        self._write_pending(summary=True)

    def _write_pending(self, *, summary: bool) -> None:
        with self._flush_lock:
            self._flush_owner = threading.get_ident()
            try:
                self._flush_locked(summary)
            finally:
                self._flush_owner = None

    def _flush_lines(self, line_bytes: int) -> None:
        """~FLUSH_BYTES pending: write the lines now (not the summary), from log()."""
        self._flush_at = self._seq + max(1, FLUSH_BYTES // max(line_bytes, 1))
        if self._flush_owner != threading.get_ident():  # else: interrupted mid-flush
            self._write_pending(summary=False)

    def _flush_unless_interrupted(self) -> None:
        if self._flush_owner != threading.get_ident():  # else: interrupted mid-flush
            self.flush()

    def _flush_locked(self, summary: bool) -> None:
        text, taken = metric_lines.take_lines(list(self._recent))
        if taken:
            self._unwritten += text
            self._summary_dirty = True
            for stream, rows in taken:  # oldest set first: the newest value of a name wins
                self._last.update(zip(stream.keys, rows[len(rows) - len(stream.keys) :]))
        if self._metrics_fd is None:
            return
        try:
            self._write_metrics(self._metrics_fd)
            if self._summary_dirty and summary:
                self._write_summary()
        except OSError as e:
            self._write_failed(e)
            return
        if self.write_error is not None:
            print(f"xp: run {self.name}: writing works again; nothing was lost",
                  file=sys.__stderr__)  # fmt: skip
            self.write_error = None

    def _write_metrics(self, fd: int) -> None:
        view = memoryview(self._unwritten)
        done = 0
        try:
            while done < len(view):
                done += os.write(fd, view[done : done + 2**20])
        finally:
            view.release()
            del self._unwritten[:done]  # a partial write keeps exactly the rest

    def _write_summary(self) -> None:
        self._summary_dirty = False
        self._summary_written = time.monotonic()
        merged = {**dict(self.summary), **self._last, **self._explicit}
        dict.update(self.summary, merged)
        try:
            # derived from metrics.jsonl (which is not fsynced either): no fsync
            self._run_dir.write_json(rd.SUMMARY_JSON, metric_lines.json_safe(merged),
                                     note=self._stop.is_set(), durable=False)  # fmt: skip
        except OSError:
            self._summary_dirty = True
            raise

    def _write_failed(self, error: OSError) -> None:
        reason = f"cannot write to {self._run_dir.path}: {error.strerror or error}"
        if self.write_error is None:
            print(f"xp: error: run {self.name}: {reason}. Keeping new metrics in memory and "
                  "retrying; earlier metrics are intact.", file=sys.__stderr__)  # fmt: skip
        self.write_error = reason
        if len(self._unwritten) > MAX_UNWRITTEN:  # keep the newest whole lines
            cut = self._unwritten.find(b"\n", len(self._unwritten) - MAX_UNWRITTEN) + 1
            self._dropped += cut
            del self._unwritten[:cut]

    def finish(self, status: str | None = None) -> None:
        """Flush everything; a standalone run also records its final status."""
        if self._closed:
            return
        self._stop.set()
        self._flush_unless_interrupted()
        self._closed = True
        self._streams.clear()  # the next log() call sees the run is closed
        self._last_stream = None
        if self._metrics_fd is not None:
            os.close(self._metrics_fd)
            self._metrics_fd = None
        failure = self._unwritten_failure()
        if self._owned:
            ended = rd.now()
            info = self._run_dir.read_run()  # read again: `xp tag` may have changed it
            final = status or ("failed" if self._failed or failure else "finished")
            info.update(
                status=final,
                ended=ended,
                duration=round(ended - (info.get("started") or ended), 3),
                exit_code=0 if final == "finished" else 1,
                **({"reason": failure} if failure else {}),
            )
            self._run_dir.write_run(info)
            process_hooks.restore_streams()
        elif failure:
            try:  # the runner marks the run failed with this reason
                self._run_dir.update_run(write_error=failure)
            except OSError:
                pass
        if _current_run.get() is self:
            _current_run.set(None)

    def _unwritten_failure(self) -> str | None:
        """Why some metrics never reached the disk, or None if all did."""
        lost = len(self._unwritten) + self._dropped
        if not lost and self.write_error is None:
            return None
        reason = self.write_error or "metrics not written"
        if lost:
            reason += f"; {lost:,} bytes of metrics lost"
        print(f"xp: error: run {self.name}: {reason}", file=sys.__stderr__)
        return reason

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        if exc_type is not None:
            self._failed = True
        status = "killed" if exc_type is KeyboardInterrupt else None
        self.finish(status)

    def __repr__(self) -> str:
        return f"<xpkit.Run {self.name} at {self.dir}>"

    # --- internals -----------------------------------------------------------
    def _flush_loop(self) -> None:
        beat_every = XP_HEARTBEAT_INTERVAL.get()
        last_beat = 0.0
        runner = 0 if self._owned else XP_RUNNER_PID.get()
        while not self._stop.wait(self._flush_interval):
            # metrics every interval; the summary at its own pace
            self._write_pending(
                summary=time.monotonic() - self._summary_written >= SUMMARY_INTERVAL
            )
            if runner and not pid_alive(runner):
                self._runner_died(runner)
            if self._owned and time.monotonic() - last_beat >= beat_every:
                try:
                    self._run_dir.beat()
                    last_beat = time.monotonic()
                except OSError:
                    pass  # the runs root is gone for now; flush() reports it

    def _runner_died(self, runner: int) -> None:
        """The `xp run` or worker supervising this run was killed: stop the run's
        processes as it would have (a shell between it and us kept us from getting
        its death signal), rather than run on unobserved under a `lost` run."""
        _warn(f"xp: error: the runner of {self.name} (pid {runner}) is gone; stopping")
        self.flush()
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        except OSError:
            os.kill(os.getpid(), signal.SIGTERM)


def _warn(text: str) -> None:
    """A warning on stderr that never breaks the training loop (a dead runner's pipe)."""
    try:
        print(text, file=sys.__stderr__)
    except (OSError, ValueError):
        pass


def init(
    *, config: Mapping[str, Any] | None = None, name: str | None = None,
    tags: list[str] | None = None, no_git: bool = False,
) -> Run:  # fmt: skip
    """Attach to the run `xp run` started, or create a standalone run.

    `config` is merged into the run's config.json; `name` and `tags` only apply to a
    standalone run (under `xp run` they come from the experiment file or the CLI).
    """
    existing = _current_run.get()
    if existing is not None and not existing._closed:
        return existing
    run_dir_path = XP_RUN_DIR.get()
    if run_dir_path is not None:
        run = Run(RunDir(run_dir_path), owned=False)
        if config:
            run.set_config(config)
    else:  # config.json is written with the run
        from xpkit.standalone import create_standalone_run

        run = create_standalone_run(name, tags or [], no_git, dict(config or {}))
    process_hooks.install_exit_hooks(run)
    _current_run.set(run)
    return run
