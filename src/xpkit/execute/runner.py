"""Run one command for one run directory: tee its output, beat, forward signals.

The command runs in its own process group so that Ctrl-C reaches the runner first;
the runner forwards SIGINT to the whole group, waits a grace period, then escalates
to SIGTERM and SIGKILL, and records `killed`. `stop()` (a worker's preemption, `xp
cancel`) sends the run's stop signal (SIGTERM unless the experiment says otherwise)
to the group, then SIGKILL after the grace. The runner also acts on a `.cancel`
intent itself, also one that arrives while the program is being started.

Each execution is one attempt of the run: a resumable run that is preempted runs
again in the same directory, its output.log and metrics.jsonl appended after an
attempt boundary, with one entry per attempt in run.json's `attempts`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path

from xpkit.errors import RunError, StoreError
from xpkit.execute.death_signal import with_death_signal
from xpkit.execute.ending import end_changes, keep_end, record_end, stopped_by
from xpkit.execute.harvest import Harvester
from xpkit.execute.supervise import Monitor, OutputTee
from xpkit.names import META_DIR
from xpkit.settings import (
    XP_ATTEMPT,
    XP_CACHE_DIR,
    XP_CKPT_DIR,
    XP_CONFIG,
    XP_EXPERIMENT_ID,
    XP_GONE_WAIT,
    XP_KILL_GRACE,
    XP_RUN_DIR,
    XP_RUN_ID,
    XP_RUN_NAME,
    XP_RUNNER_PID,
    XP_STOP_SIGNAL,
    XP_TRIAL,
)
from xpkit.store import rundir as rd
from xpkit.store.locks import pid_alive
from xpkit.store.rundir import RunDir

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

_SHELL_WORDS = {
    "cd",
    "export",
    "source",
    ".",
    "if",
    "for",
    "while",
    "until",
    "case",
    "exec",
    "eval",
    "set",
    "unset",
    "time",
    "{",
    "(",
    "!",
    "env",
    "[",
    "test",
}


# A program that exits with this code asks to be requeued (EX_TEMPFAIL, "try again
# later"): a resumable run goes back to the queue as its next attempt.
REQUEUE_EXIT_CODE = 75
CHECKPOINTS = "checkpoints"


class Outcome(namedtuple("Outcome", "status exit_code")):
    """How an execution ended: status (str), exit_code (int, or None if none started)."""

    __slots__ = ()


def stop_signal_of(run: dict[str, Any]) -> signal.Signals:
    try:
        return signal.Signals[str(run.get("stop_signal") or "SIGTERM")]
    except KeyError:
        return signal.SIGTERM


def resolve_program(command: str, argv: list[str] | None, cwd: Path, path_env: str) -> None:
    """Fail early, with a clear message, when the program to start does not exist."""
    if argv is not None:
        program = argv[0]
    else:
        try:
            words = shlex.split(command)
        except ValueError as e:
            raise RunError(f"command {command!r} is not valid shell syntax: {e}") from e
        words = [w for w in words if not ("=" in w and w.split("=")[0].isidentifier())]
        if not words or words[0] in _SHELL_WORDS or any(c in command for c in "|;&$`<>"):
            return  # the shell will report problems itself
        program = words[0]
    if "/" in program:
        target = Path(program) if os.path.isabs(program) else cwd / program
        if target.is_file() and not os.access(target, os.X_OK):
            raise RunError(f"{program!r} is not executable: `chmod +x {program}`, or start it "
                           "with its interpreter (python, bash)")  # fmt: skip
        if target.exists():
            return
        raise RunError(f"command not found: {program!r} (no such file in {cwd})")
    if shutil.which(program, path=path_env) is None:
        raise RunError(
            f"command not found: {program!r} is not on PATH. Check the spelling of the "
            "command, or activate the environment that provides it."
        )


_SHELL_SYNTAX = set("|;&$`<>*?[]{}~()\\!#")


def command_argv(command: str) -> list[str]:
    """A simple command (program and arguments, nothing the shell would expand) runs
    directly, so that it is the runner's own child and dies with it (kill -9 of the
    runner must not leave training processes running, holding GPUs, under a `lost`
    run). Anything else runs through /bin/sh -c."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    simple = words and not (_SHELL_SYNTAX & set(command)) and words[0] not in _SHELL_WORDS
    if simple and not ("=" in words[0] and words[0].split("=")[0].isidentifier()):
        return words
    return ["/bin/sh", "-c", command]


def child_environment(run: dict[str, Any], run_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env[XP_RUN_DIR.name] = str(run_dir)
    env[XP_RUN_NAME.name] = run["name"]
    env[XP_EXPERIMENT_ID.name] = run["experiment_id"]
    env[XP_TRIAL.name] = str(run["trial"])
    env[XP_CONFIG.name] = str(run_dir / rd.CONFIG_JSON)
    env[XP_RUNNER_PID.name] = str(os.getpid())
    env[XP_RUN_ID.name] = str(run.get("id") or run["name"])
    env[XP_ATTEMPT.name] = str(run.get("attempt") or 1)
    env[XP_STOP_SIGNAL.name] = stop_signal_of(run).name
    if run.get("resumable"):
        env[XP_CKPT_DIR.name] = str(run_dir / CHECKPOINTS)
    env.setdefault("PYTHONUNBUFFERED", "1")  # live output through the pipe
    return env


class Runner:
    """Executes one prepared run directory in a given working directory."""

    def __init__(self, run_dir: RunDir, cwd: Path, *, echo: bool = True,
                 on_started: Callable[[], None] | None = None) -> None:  # fmt: skip
        """`on_started`: called once the program has started (and run.json says so)."""
        self.run_dir = run_dir
        self.on_started = on_started
        self.cwd = cwd
        self.echo = echo
        self._interrupts = 0
        self._pgid: int | None = None
        self._stop_requested = False
        self._stop_signal = signal.SIGTERM
        self._lock = threading.Lock()

    def execute(self, extra_env: dict[str, str] | None = None) -> Outcome:
        run = self.run_dir.read_run()
        self._stop_signal = stop_signal_of(run)
        env = child_environment(run, self.run_dir.path, extra_env or {})
        if run.get("resumable"):
            self.run_dir.file(CHECKPOINTS).mkdir(exist_ok=True)
        try:
            command, argv = self.run_dir.executed_command(run)
            resolve_program(command, argv, self.cwd, env.get("PATH", ""))
        except (RunError, StoreError) as e:
            self._fail_to_start(str(e))
            raise RunError(f"{run['name']}: {e}") from e
        args = argv if argv is not None else command_argv(command)
        if self._stop_requested or self.run_dir.file(rd.CANCEL).exists():
            return self._cancelled_before_start()
        self._mark_attempt(run)
        # Before the program starts: the metric files already there are another run's.
        sources = run.get("metrics_from") or {}
        harvester = Harvester(
            self.run_dir,
            sources.get("stdout", []),
            # "tensorboard": true is how runs queued before the file sources say it
            sources.get("files") or (["tensorboard"] if sources.get("tensorboard") else []),
            search=[self.run_dir.path, self.cwd],
            floor=self.run_dir.last_step() if int(run.get("attempt") or 1) > 1 else rd.NO_STEP,
        )
        read_fd, write_fd = os.pipe()
        import subprocess

        started_args, preexec = with_death_signal(args, os.getpid())
        try:
            child = subprocess.Popen(
                started_args,
                cwd=self.cwd,
                env=env,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except OSError as e:
            os.close(read_fd)
            os.close(write_fd)
            reason = f"could not start {args[0]!r}: {e.strerror}"
            self._fail_to_start(reason)
            raise RunError(f"{run['name']}: {reason}") from e
        os.close(write_fd)
        with self._lock:
            self._pgid = child.pid
        if self._stop_requested:  # asked to stop while the program was being started
            self._stop_group()
        started = rd.now()
        self.run_dir.beat()
        # Not fsynced: a power cut takes the program and its runner too, and the run, its
        # holder gone, reads as lost either way; the end of the run is fsynced (and an
        # fsync here would wait on ext4's journal beside the starting program: ~3 ms).
        self.run_dir.update_run(durable=False, status="running", started=started,
                                pid=child.pid, host=os.uname().nodename)  # fmt: skip
        if self.on_started is not None:
            self.on_started()
        echo = sys.stdout.buffer if self.echo else None
        spool = XP_CACHE_DIR.get() / "spool" / f"{self.run_dir.name}.output.log"
        with open(self.run_dir.file(rd.OUTPUT_LOG), "ab", buffering=0) as log:
            tee = OutputTee(read_fd, log, echo, harvester, spool)
            monitor = Monitor(self.run_dir, child.pid, harvester, self.stop)
            tee.start()
            monitor.start()
            with self._forward_signals():
                exit_code, ru_maxrss = self._wait(child.pid)
            child.returncode = exit_code
            tee.join(timeout=5.0)
            if tee.is_alive():  # leftovers of the run still hold the pipe open
                _killpg(child.pid, signal.SIGKILL)
                tee.join()
            monitor.stop.set()
            monitor.join()
        ended = rd.now()
        status = "finished" if exit_code == 0 else "failed"
        if self._interrupts:
            status = "killed"
        why = _reason(status, exit_code)
        intent = self.run_dir.read_optional(rd.CANCEL) if status == "killed" else None
        if isinstance(intent, dict):  # `xp cancel` (or a sweep's pruner) stopped it
            status, why = stopped_by(intent)
        if not self._wait_for_run_dir(status):
            changes = end_changes(run, status, exit_code, started, ended, why)
            keep_end(self.run_dir, changes, "its folder is gone")
            return Outcome(status, exit_code)
        write_error = self.run_dir.read_run().get("write_error") or tee.error
        if tee.dropped:
            write_error = f"{write_error}; {tee.dropped:,} bytes of output lost"
        if write_error and status == "finished":
            status, why = "failed", write_error
        self._unspool(spool)
        if run.get("app"):
            self._take_composed_config(str(run["app"]))
        try:
            harvester.finish()
        except OSError as e:
            why = f"{why + '; ' if why else ''}harvested metrics not written: {e.strerror}"
        if exit_code == REQUEUE_EXIT_CODE and status == "failed":
            why = f"exit code {exit_code}: asks to be requeued" + (
                "" if run.get("resumable") else " (the run is not resumable)"
            )
        peak = max(monitor.peak_rss, ru_maxrss * 1024)
        info = self.run_dir.read_run()
        record_end(self.run_dir, end_changes(info, status, exit_code, started, ended, why, peak))
        return Outcome(status, exit_code)

    def _take_composed_config(self, app: str) -> None:
        """The config a Hydra/LightningCLI program composed becomes config.json."""
        from xpkit import apps

        config = apps.composed_config(app, self.run_dir.path)
        if config is None:
            print(
                f"xp: warning: {self.run_dir.name}: the {app} program saved no config in its "
                "run directory; config.json keeps the run's params",
                file=sys.stderr,
            )
            return
        try:
            self.run_dir.write_json(rd.CONFIG_JSON, config)
        except OSError as e:
            print(f"xp: warning: {self.run_dir.name}: config.json not written: {e.strerror}",
                  file=sys.stderr)  # fmt: skip

    def _mark_attempt(self, run: dict[str, Any]) -> None:
        """A later attempt begins with a boundary line in output.log and metrics.jsonl
        (a line without a step, which readers of metrics skip)."""
        attempt = int(run.get("attempt") or 1)
        if attempt < 2:
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"\n── xp: attempt {attempt} of {run['name']} on {os.uname().nodename}, {when} ──\n"
        with open(self.run_dir.file(rd.OUTPUT_LOG), "a", encoding="utf-8") as log:
            log.write(line)
        with open(self.run_dir.file(rd.METRICS), "a", encoding="utf-8") as metrics:
            metrics.write(f'{{"attempt": {attempt}, "time": {time.time():.3f}}}\n')

    def _cancelled_before_start(self) -> Outcome:
        # The intent stays: its holder reads it (a `--requeue` puts the run back).
        intent = self.run_dir.read_optional(rd.CANCEL)
        status, why = stopped_by(intent) if isinstance(intent, dict) else ("cancelled", "")
        if status == "cancelled":
            why = "cancelled before the program started"
        self.run_dir.update_run(status=status, ended=rd.now(), reason=why)
        return Outcome(status, None)

    def _wait_for_run_dir(self, status: str) -> bool:
        """The run has ended; to record how, its directory must be reachable. Wait a
        while (XP_GONE_WAIT) for an unmounted or renamed runs root to come back; a run
        moved to the trash meanwhile (`xp rm` of a run that looked lost) is recorded
        there. False: still gone."""
        warned = False
        deadline = time.monotonic() + XP_GONE_WAIT.get()
        trashed = RunDir(self.run_dir.path.parent / META_DIR / "trash" / self.run_dir.name)
        while not self.run_dir.file(rd.RUN_JSON).is_file():
            if trashed.file(rd.RUN_JSON).is_file():
                print(f"xp: {self.run_dir.name} was moved to the trash while it ran; "
                      "its end is recorded there", file=sys.stderr)  # fmt: skip
                self.run_dir = trashed
                return True
            if time.monotonic() > deadline:
                return False
            if not warned:
                print(
                    f"xp: run {self.run_dir.name} ended ({status}) but {self.run_dir.path} "
                    f"is gone; waiting up to {XP_GONE_WAIT.get():.0f} s for it to come back",
                    file=sys.stderr,
                )
                warned = True
            time.sleep(1.0)
        return True

    def _unspool(self, spool: Path) -> None:
        """Append the output kept on local disk while output.log could not be written."""
        if not spool.is_file():
            return
        try:
            with open(self.run_dir.file(rd.OUTPUT_LOG), "ab") as log, open(spool, "rb") as kept:
                shutil.copyfileobj(kept, log)
        except OSError as e:
            print(
                f"xp: error: the output of {self.run_dir.name} stays in {spool}: {e}",
                file=sys.stderr,
            )
            return
        spool.unlink()

    def _wait(self, pid: int) -> tuple[int, int]:
        while True:
            try:
                _, wait_status, usage = os.wait4(pid, 0)
                return os.waitstatus_to_exitcode(wait_status), usage.ru_maxrss
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue

    def stop(self) -> None:
        """Stop the command: its stop signal to the process group, SIGKILL after the
        grace; the run is recorded as killed. Safe from any thread, also before the
        program has started (it then stops as soon as it has, or never starts)."""
        with self._lock:
            if self._stop_requested:
                return
            self._stop_requested = True
            self._interrupts += 1
            if self._pgid is None:
                return
        self._stop_group()

    def _stop_group(self) -> None:
        assert self._pgid is not None
        _killpg(self._pgid, self._stop_signal)
        threading.Thread(
            target=self._escalate, args=(self._pgid, (signal.SIGKILL,)), daemon=True
        ).start()

    def _fail_to_start(self, reason: str) -> None:
        now = rd.now()
        self.run_dir.update_run(status="failed", ended=now, reason=reason)
        with open(self.run_dir.file(rd.OUTPUT_LOG), "a", encoding="utf-8") as log:
            log.write(f"xp: {reason}\n")

    def _forward_signals(self) -> _SignalForwarder:
        return _SignalForwarder(self._on_signal)

    def _on_signal(self, signum: int) -> None:
        self._interrupts += 1
        if self._pgid is None:
            return
        if self._interrupts == 1:
            _killpg(self._pgid, signal.SIGINT)
            threading.Thread(target=self._escalate, args=(self._pgid,), daemon=True).start()
        else:  # a second Ctrl-C: the user does not want to wait
            _killpg(self._pgid, signal.SIGKILL)

    def _escalate(
        self, pgid: int, then: tuple[int, ...] = (signal.SIGTERM, signal.SIGKILL)
    ) -> None:
        grace = XP_KILL_GRACE.get()
        for sig in then:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not pid_alive(pgid, group=True):
                    return
                time.sleep(0.05)
            _killpg(pgid, sig)


def _reason(status: str, exit_code: int) -> str | None:
    if status == "failed":
        if exit_code < 0:
            return f"killed by signal {signal.Signals(-exit_code).name}"
        return f"exit code {exit_code}"
    if status == "killed":
        return "stopped (Ctrl-C, SIGTERM to the runner, xp cancel or a worker's preemption)"
    return None


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _SignalForwarder:
    """Route SIGINT/SIGTERM to a callback while the child runs (main thread only)."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self.callback = callback
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, lambda s, _f: self.callback(s))
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
