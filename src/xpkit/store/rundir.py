"""A run directory: exclusive creation, atomic JSON writes, status and heartbeat.

Every metadata file is written to a temporary file, fsynced and renamed over the old
one, so a reader sees either the old or the new content, never half of it (a file that
can be derived again, like summary.json, is not fsynced).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from xpkit.errors import StoreError
from xpkit.settings import XP_HEARTBEAT_TIMEOUT
from xpkit.store import journal

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module
if TYPE_CHECKING:
    from typing import Any

RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
GIT_JSON = "git.json"
GIT_DIFF = "git.diff"
ENV_JSON = "env.json"
OUTPUT_LOG = "output.log"
METRICS = "metrics.jsonl"
SUMMARY_JSON = "summary.json"
CHECKPOINTS = "checkpoints.jsonl"  # one line per checkpoint the program saved
ARTIFACTS = "artifacts"
HEARTBEAT = ".heartbeat"

CLAIM = ".claim"  # exclusive-create file: who took a queued run
SECRETS = ".secrets.json"  # the real values of a command's masked secrets, mode 0600
CANCEL = ".cancel"  # a request to stop a running run, polled by its worker

ACTIVE = ("queued", "running")
# `pruned`: a sweep's pruner stopped the trial early (its values so far are kept)
ENDED = ("finished", "failed", "killed", "cancelled", "pruned")
STATUSES = ("queued", "running", "finished", "failed", "killed", "cancelled", "pruned", "lost")


def encode_json(data: Any) -> bytes:
    """A metadata file's bytes: indented JSON, as people read it, and a final newline."""
    return (json.dumps(data, indent=2, default=str) + "\n").encode()


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    """Write JSON so that a crash leaves either the old file or the new one. `durable`
    (fsync before the rename) for what a power loss must not take; a file that can be
    derived again (summary.json, from metrics.jsonl) skips it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        write_new(tmp, encode_json(data), durable)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_new(path: Path, content: bytes, durable: bool = True, mode: int = 0o644) -> None:
    """Write a file that must not exist yet; fsync it when `durable`. In a folder no one
    reads yet (a staged run) it is written in place: no temporary file and rename."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        done = 0
        while done < len(content):
            done += os.write(fd, content[done:])
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def new_lines(path: str | Path, offset: int) -> tuple[bytes, int]:
    """The complete lines an append-only file (output.log, metrics.jsonl) gained since
    byte `offset`, and the offset after them: a line still being written is left for the
    next look. OSError when the file cannot be read."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    return data[:end], offset + end


def read_json(path: Path) -> Any:
    """A JSON file; ValueError for one that is not JSON or too deeply nested to read."""
    with path.open(encoding="utf-8") as f:
        try:
            return json.load(f)
        except RecursionError:
            raise ValueError(f"{path.name} is nested too deeply to read") from None


_NUMBER = (int, float)
# run.json fields a reader relies on, and what each must be when present (runs written
# by older versions lack some). `None` is allowed where a field starts unset.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), False), "experiment_id": ((str,), False), "trial": ((int,), False),
    "slug": ((str,), False), "status": ((str,), False), "command": ((str,), False),
    "argv": ((list,), True), "params": ((dict,), True), "tags": ((list,), True),
    "experiment": ((dict,), True), "created": (_NUMBER, True), "started": (_NUMBER, True),
    "ended": (_NUMBER, True), "duration": (_NUMBER, True), "exit_code": ((int,), True),
    "pid": ((int,), True), "gpus": ((list,), True), "gpus_requested": ((int,), True),
    "host": ((str,), True), "snapshot": ((str,), True), "priority": ((int,), True),
    "labels": ((list,), True), "attempt": ((int,), True), "attempts": ((list,), True),
    "reason": ((str,), True), "resumable": ((bool,), True),
}  # fmt: skip
_INT_LIMIT = 2**53  # what JavaScript and SQLite take exactly
# metrics.jsonl: a step is an int64 (the curve cache's arrays), a value converts to a float
STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1
NO_STEP = STEP_MIN - 1  # the last step of a run that logged none: every step is above it
FLOAT_INT = int(sys.float_info.max)


def check_run(data: dict[str, Any]) -> str | None:
    """What is wrong with a run.json's fields (JSON path and what it should be), or None."""
    for key, value in data.items():
        spec = _FIELD_TYPES.get(key)
        if spec is None or (value is None and spec[1]):
            continue
        types = spec[0]
        kind = type(value)
        if (kind is bool and bool not in types) or not isinstance(value, types):
            return f"'{key}' is {_shown(value)}, not {' or '.join(t.__name__ for t in types)}"
        if kind is int and abs(value) > _INT_LIMIT:  # type: ignore[arg-type]
            return f"'{key}' is {_shown(value)}, out of range"
        if kind is float and not math.isfinite(value):  # type: ignore[arg-type]
            return f"'{key}' is {value}, not a finite number"
    if "status" in data and data["status"] not in STATUSES:
        return f"'status' is {_shown(data['status'])}, not one of {', '.join(STATUSES)}"
    for key in ("tags", "labels", "argv"):
        if isinstance(data.get(key), list) and not all(isinstance(x, str) for x in data[key]):
            return f"'{key}' must be a list of strings"
    if isinstance(data.get("gpus"), list) and not all(type(x) is int for x in data["gpus"]):
        return "'gpus' must be a list of GPU indices"
    return None


def check_summary(summary: Any) -> str | None:
    """What is wrong with a summary.json (its key), or None: values are numbers a float
    can hold, strings, booleans, or containers of those no more than 20 deep."""
    if not isinstance(summary, dict):
        return "summary.json is not a JSON object"

    def bad(value: Any, depth: int) -> bool:
        if isinstance(value, int) and not isinstance(value, bool):
            return abs(value) > FLOAT_INT
        if isinstance(value, dict | list):
            items = value.values() if isinstance(value, dict) else value
            return depth >= 20 or any(bad(v, depth + 1) for v in items)
        return not isinstance(value, str | float | bool | type(None))

    for key, value in summary.items():
        if bad(value, 0):
            return f"summary.json: '{key}' is {_shown(value)}: too large or too deeply nested"
    return None


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, default=str) if not isinstance(value, int) else str(value)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def now() -> float:
    return round(time.time(), 3)


class RunDir:
    """One run's directory. Cheap to construct; reads files on demand."""

    def __init__(self, path: Path, created: dict[str, Any] | None = None) -> None:
        self.path = path
        # the run.json written by create() (and carried by publish_run), so that the
        # process that created the run need not read it back; None when opened
        self.created = created

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def create(cls, path: Path, run: dict[str, Any], artifacts: bool = True) -> RunDir:
        """Create the directory exclusively and write its first run.json. For a staging
        folder: its files are written in place, and it appears by a rename when whole.
        `artifacts`: create the artifacts folder now (else on first use)."""
        try:
            path.mkdir(parents=False, exist_ok=False)
        except FileExistsError as e:
            raise StoreError(f"run directory {path} already exists") from e
        except OSError as e:
            raise StoreError(
                f"cannot create run directory {path}: {e.strerror}. "
                "Check that the runs root is writable (`runs = ...` in xp.toml or XP_RUNS)."
            ) from e
        rundir = cls(path, run)
        if artifacts:
            (path / ARTIFACTS).mkdir()
        write_new(rundir.file(RUN_JSON), encode_json(run))
        return rundir

    # --- metadata -----------------------------------------------------------------
    def read_run(self) -> dict[str, Any]:
        try:
            data = read_json(self.file(RUN_JSON))
        except FileNotFoundError as e:
            raise StoreError(f"{self.name}: run.json is missing") from e
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise StoreError(f"{self.name}: run.json is corrupt ({e})") from e
        if not isinstance(data, dict):
            raise StoreError(f"{self.name}: run.json is not a JSON object")
        problem = check_run(data)
        if problem is not None:
            raise StoreError(f"{self.name}: run.json: {problem}")
        return data

    def write_run(self, run: dict[str, Any]) -> None:
        self.write_json(RUN_JSON, run)

    def update_run(self, durable: bool = True, **changes: Any) -> dict[str, Any]:
        """Apply `changes` to run.json; `durable`: fsynced before it replaces the old."""
        run = self.read_run()
        run.update(changes)
        self.write_json(RUN_JSON, run, durable=durable)
        return run

    def write_json(self, name: str, data: Any, note: bool = True, durable: bool = True) -> None:
        """Write one of the run's JSON files atomically (see write_json_atomic). Unless
        `note` is False (a live run's periodic summary: listings re-read running runs
        anyway), the change is journaled before and after it, so that listings re-read
        this run (store/journal)."""
        if note:
            journal.note(self.path)
        write_json_atomic(self.file(name), data, durable)
        if note:
            journal.note(self.path)

    def read_optional(self, name: str, default: Any = None) -> Any:
        try:
            return read_json(self.file(name))
        except (OSError, ValueError):
            return default

    def read_checkpoints(self) -> list[dict[str, Any]]:
        """The checkpoints the program recorded, oldest first (a torn last line, from a
        kill mid-write, is skipped)."""
        try:
            lines = self.file(CHECKPOINTS).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                entries.append(entry)
        return entries

    def last_step(self) -> int:
        """The highest step in metrics.jsonl (NO_STEP if none), reading only its tail."""
        try:
            with open(self.file(METRICS), "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                chunk = 1 << 16
                while True:
                    start = max(0, size - chunk)
                    f.seek(start)
                    lines = f.read(size - start).splitlines()
                    for line in reversed(lines[1:] if start else lines):
                        try:
                            step = json.loads(line).get("step")
                        except (ValueError, AttributeError):
                            continue
                        if type(step) is int:
                            return step
                    if not start:
                        return NO_STEP
                    chunk *= 4
        except OSError:
            return NO_STEP

    def write_secrets(self, command: str, argv: list[str] | None) -> None:
        """The command as it is executed, when run.json shows it with secret values
        masked: readable by its owner only, never backed up, shown or sent home."""
        fd = os.open(self.file(SECRETS), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"command": command, "argv": argv}, f)

    def executed_command(self, run: dict[str, Any]) -> tuple[str, list[str] | None]:
        """(command, argv) to execute: run.json's, with its masked secrets put back."""
        if not run.get("redacted"):
            return run["command"], run.get("argv")
        real = self.read_optional(SECRETS)
        if not isinstance(real, dict) or not isinstance(real.get("command"), str):
            raise StoreError(
                f"{self.name}: its command had secret values (masked in run.json) and "
                f"{SECRETS}, which keeps them, is missing (a run restored from a backup, or "
                "copied?); start it again with `xp run` giving them"
            )
        return real["command"], real.get("argv")

    # --- liveness -----------------------------------------------------------------
    def beat(self) -> None:
        """Refresh the heartbeat. Touching a file leaves the directory mtime alone,
        so the index does not re-read a run on every beat."""
        hb = self.file(HEARTBEAT)
        try:
            os.utime(hb)
        except FileNotFoundError:
            hb.touch()

    def heartbeat_age(self) -> float | None:
        try:
            return time.time() - self.file(HEARTBEAT).stat().st_mtime
        except OSError:
            return None


def effective_status(status: str, heartbeat_age: float | None, started: float | None) -> str:
    """`running` with a stale heartbeat is `lost`: its runner died or its machine did."""
    if status != "running":
        return status
    timeout = XP_HEARTBEAT_TIMEOUT.get()
    if heartbeat_age is None:
        age = time.time() - started if started else None
        return "lost" if age is not None and age > timeout else status
    return "lost" if heartbeat_age > timeout else status


def status_of(rundir: RunDir, run: dict[str, Any]) -> str:
    """The status to show: a `running` run is `lost` when its heartbeat is stale, or at
    once when its holder was a process on this host that died (as the queue decides)."""
    status = effective_status(
        run.get("status", "unknown"), rundir.heartbeat_age(), run.get("started")
    )
    if status == "running":
        from xpkit.store import claims  # claims builds on this module

        if claims.holder_died_here(rundir):
            return "lost"
    return status
