"""The durable outbox: every event is a file before anything is sent.

`<runs>/.xp/outbox/<hook>/<time>-<event id>.json` holds the event and its delivery
state; a deliverer (a background thread of xp run / xp worker, or `xp hooks flush`)
sends what is due, with exponential backoff and jitter on transient errors, honouring
Retry-After, under a per-hook rate limit. After the retry window an event moves to
`dead/` (`xp hooks ls`, `xp hooks retry`). The event ID is the idempotency key, so a
redelivery after a crash between send and acknowledge creates nothing twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from xpkit.errors import HookError
from xpkit.hooks.base import Event, Hook, HookSpec, TransientError, make_hook
from xpkit.names import META_DIR
from xpkit.store.locks import exclusive_lock
from xpkit.store.rundir import write_json_atomic

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

BACKOFF_FIRST, BACKOFF_MAX = 2.0, 600.0
BURST = 5  # events a hook may get at once before its rate limit spaces them
ERRORS = "deliverer-errors.log"  # what went wrong in a background deliverer, in words


def outbox_dir(runs_root: Path) -> Path:
    return runs_root / META_DIR / "outbox"


def sweep_state_path(runs_root: Path, sweep: str) -> Path:
    """The sweep's runs (written by `hooks.events` under its lock)."""
    return runs_root / META_DIR / "sweeps" / f"{sweep}.json"


def hook_state_path(runs_root: Path, sweep: str, hook: str) -> Path:
    """What one hook remembers of a sweep (its Todoist task): written only by that
    hook's deliverer, under the hook's lock, never by the writer of the runs list."""
    return runs_root / META_DIR / "sweeps" / f"{sweep}.hook-{hook}.json"


def record_error(runs_root: Path, where: str, error: BaseException) -> None:
    """A background deliverer never lets a problem surface in a run, and never loses
    it either: one line in the outbox's error log (`xp hooks ls` shows the last)."""
    try:
        folder = outbox_dir(runs_root)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(folder / ERRORS, "a", encoding="utf-8") as log:
            log.write(f"{stamp} {where}: {type(error).__name__}: {error}\n")
    except OSError:
        pass  # the runs root itself is failing: the run reports that


def emit(runs_root: Path, specs: list[HookSpec], event: Event) -> int:
    """Queue `event` for every hook that wants it; returns how many. Never raises
    for a hook problem: notifications must not break a run."""
    count = 0
    for spec in specs:
        if event.type not in spec.events:
            continue
        folder = outbox_dir(runs_root) / spec.name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            record = {"event": event.to_json(), "attempts": 0, "next_at": 0.0, "error": None}
            write_json_atomic(folder / f"{event.time:.6f}-{event.id}.json", record)
            count += 1
        except OSError:
            continue
    return count


class Deliverer:
    def __init__(self, runs_root: Path, specs: list[HookSpec]) -> None:
        self.runs_root = runs_root
        self.specs = {s.name: s for s in specs}
        self.hooks: dict[str, Hook] = {}
        self.tokens: dict[str, tuple[float, float]] = {}  # hook: (tokens, at)
        self.failing: set[str] = set()  # hooks whose last attempt here failed
        self.log: list[str] = []

    def _hook(self, name: str) -> Hook:
        if name not in self.hooks:
            self.hooks[name] = make_hook(self.specs[name])
        return self.hooks[name]

    def pending(self, name: str) -> list[Path]:
        folder = outbox_dir(self.runs_root) / name
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def deliver_due(self, deadline: float | None = None) -> int:
        """Send what is due, oldest first, per hook; returns how many were delivered."""
        sent = 0
        for name, spec in self.specs.items():
            lock = outbox_dir(self.runs_root) / f".{name}.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(lock, timeout=30):
                for path in self.pending(name):
                    if deadline is not None and time.time() > deadline:
                        return sent
                    try:
                        record = json.loads(path.read_text())
                        record["event"]["type"]
                    except OSError:
                        continue
                    except (ValueError, KeyError, TypeError) as e:
                        self._quarantine(spec, path, e)
                        continue
                    if record.get("next_at", 0) > time.time():
                        break  # keep the order: later events wait for this one
                    self._respect_rate(spec)
                    if self._send(spec, path, record):
                        sent += 1
                    else:
                        break
        return sent

    def _respect_rate(self, spec: HookSpec) -> None:
        """A token bucket: BURST events at once (a small sweep never waits), then
        `rate_per_minute`."""
        if spec.rate_per_minute <= 0:
            return
        rate = spec.rate_per_minute / 60.0
        tokens, at = self.tokens.get(spec.name, (float(BURST), time.monotonic()))
        tokens = min(float(BURST), tokens + (time.monotonic() - at) * rate)
        if tokens < 1.0:
            time.sleep((1.0 - tokens) / rate)
            tokens = 1.0
        self.tokens[spec.name] = (tokens - 1.0, time.monotonic())

    def _send(self, spec: HookSpec, path: Path, record: dict[str, Any]) -> bool:
        event = Event.from_json(record["event"])
        state_path = hook_state_path(self.runs_root, event.sweep or "none", spec.name)
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = {}
        try:
            answer = self._hook(spec.name).deliver(event=event, state=state,
                                                   key=f"{spec.name}-{event.id}")  # fmt: skip
        except TransientError as e:
            self.failing.add(spec.name)
            return self._retry(spec, path, record, str(e), e.retry_after)
        except HookError as e:
            self.failing.add(spec.name)
            return self._dead(spec, path, record, str(e))
        except Exception as e:  # a broken plugin: keep the event, say why
            self.failing.add(spec.name)
            return self._dead(spec, path, record, f"{type(e).__name__}: {e}")
        self.failing.discard(spec.name)
        state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(state_path, state)
        path.unlink(missing_ok=True)
        self.log.append(f"{spec.name}: {event.type} delivered ({answer})")
        return True

    def _retry(self, spec: HookSpec, path: Path, record: dict[str, Any], error: str,
               retry_after: float | None) -> bool:  # fmt: skip
        record["attempts"] = attempts = record.get("attempts", 0) + 1
        record["error"] = error
        first = record["event"]["time"]
        if time.time() - first > spec.retry_hours * 3600:
            return self._dead(spec, path, record, f"gave up after {attempts} attempts: {error}")
        backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempts - 1))
        delay = retry_after if retry_after is not None else backoff * (0.5 + _fraction())
        record["next_at"] = time.time() + delay
        write_json_atomic(path, record)
        self.log.append(
            f"{spec.name}: {record['event']['type']} will retry in {delay:.1f} s: {error}"
        )
        return False

    def _quarantine(self, spec: HookSpec, path: Path, error: Exception) -> None:
        """A corrupt event file (a crash mid-write by an older version, a disk error):
        kept aside as .corrupt, out of the way of the events behind it."""
        target = path.with_suffix(".corrupt")
        path.replace(target)
        self.log.append(f"{spec.name}: skipped corrupt event file {target} ({error!r})")

    def _dead(self, spec: HookSpec, path: Path, record: dict[str, Any], error: str) -> bool:
        record["error"] = error
        dead = path.parent / "dead"
        dead.mkdir(exist_ok=True)
        write_json_atomic(dead / path.name, record)
        path.unlink(missing_ok=True)
        self.log.append(f"{spec.name}: {record['event']['type']} failed for good: {error}")
        return True  # the next events may go on


def dead_letters(runs_root: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    found = []
    root = outbox_dir(runs_root)
    for path in sorted(root.glob("*/dead/*.json")) if root.is_dir() else []:
        try:
            found.append((path.parent.parent.name, path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return found


def retry_dead(runs_root: Path) -> int:
    moved = 0
    for _, path, record in dead_letters(runs_root):
        record.update(attempts=0, next_at=0.0, error=None)
        record["event"]["time"] = time.time()  # a fresh retry window
        write_json_atomic(path.parent.parent / path.name, record)
        path.unlink()
        moved += 1
    return moved


def deliver_briefly(
    runs_root: Path, specs: list[HookSpec], seconds: float, skip: set[str] | None = None
) -> None:
    """Give pending events `seconds` to go out, without ever waiting longer (a hanging
    API must not hold up the end of `xp run`); hooks in `skip` (failing in this process)
    are not tried again; the outbox keeps what is left for the next deliverer."""
    deadline = time.time() + seconds
    specs = [s for s in specs if s.name not in (skip or set())]
    if not specs:
        return

    def work() -> None:
        try:
            Deliverer(runs_root, specs).deliver_due(deadline=deadline)
        except Exception as e:
            record_error(runs_root, "final delivery", e)

    thread = threading.Thread(target=work, daemon=True, name="xp-hooks-final")
    thread.start()
    thread.join(timeout=seconds)


class Background:
    """A daemon thread that delivers every `every` seconds until stopped."""

    def __init__(self, runs_root: Path, specs: list[HookSpec], every: float = 1.0) -> None:
        self.stop = threading.Event()
        self.deliverer = Deliverer(runs_root, specs)
        if specs:
            threading.Thread(target=self._loop, args=(runs_root, every), daemon=True,
                             name="xp-hooks").start()  # fmt: skip

    def _loop(self, runs_root: Path, every: float) -> None:
        while not self.stop.wait(every):
            try:
                self.deliverer.deliver_due()
            except Exception as e:  # never surfaces in a run; never lost either
                record_error(runs_root, "background delivery", e)

    @property
    def failing(self) -> set[str]:
        return set(self.deliverer.failing)


def start_background(runs_root: Path, specs: list[HookSpec], every: float = 1.0) -> Background:
    """Deliver in a daemon thread; `.stop.set()` stops it."""
    return Background(runs_root, specs, every)


def _fraction() -> float:
    """A random fraction in [0, 1) for the retry jitter (random costs ~1.5 ms of every
    `xp run` to import)."""
    return int.from_bytes(os.urandom(4), "big") / 2**32
