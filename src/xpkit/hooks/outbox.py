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
import random
import threading
import time
from pathlib import Path
from typing import Any

from xpkit.errors import HookError
from xpkit.hooks.base import Event, Hook, HookSpec, TransientError, make_hook
from xpkit.names import META_DIR
from xpkit.store.locks import exclusive_lock
from xpkit.store.rundir import write_json_atomic

BACKOFF_FIRST, BACKOFF_MAX = 2.0, 600.0


def outbox_dir(runs_root: Path) -> Path:
    return runs_root / META_DIR / "outbox"


def sweep_state_path(runs_root: Path, sweep: str) -> Path:
    return runs_root / META_DIR / "sweeps" / f"{sweep}.json"


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
        self.last_sent: dict[str, float] = {}
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
        spacing = 60.0 / spec.rate_per_minute if spec.rate_per_minute > 0 else 0.0
        wait = self.last_sent.get(spec.name, 0.0) + spacing - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_sent[spec.name] = time.monotonic()

    def _send(self, spec: HookSpec, path: Path, record: dict[str, Any]) -> bool:
        event = Event.from_json(record["event"])
        state_path = sweep_state_path(self.runs_root, event.sweep or "none")
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = {}
        hook_state = state.setdefault(spec.name, {})
        try:
            answer = self._hook(spec.name).deliver(event=event, state=hook_state,
                                                   key=f"{spec.name}-{event.id}")  # fmt: skip
        except TransientError as e:
            return self._retry(spec, path, record, str(e), e.retry_after)
        except HookError as e:
            return self._dead(spec, path, record, str(e))
        except Exception as e:  # a broken plugin: keep the event, say why
            return self._dead(spec, path, record, f"{type(e).__name__}: {e}")
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
        delay = retry_after if retry_after is not None else backoff * (0.5 + random.random())
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


def deliver_briefly(runs_root: Path, specs: list[HookSpec], seconds: float) -> None:
    """Give pending events `seconds` to go out, without ever waiting longer (a hanging
    API must not hold up the end of `xp run`); the outbox keeps what is left."""
    deadline = time.time() + seconds

    def work() -> None:
        try:
            Deliverer(runs_root, specs).deliver_due(deadline=deadline)
        except Exception:
            pass

    thread = threading.Thread(target=work, daemon=True, name="xp-hooks-final")
    thread.start()
    thread.join(timeout=seconds)


def start_background(runs_root: Path, specs: list[HookSpec], every: float = 1.0) -> threading.Event:
    """Deliver in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    if not specs:
        return stop
    deliverer = Deliverer(runs_root, specs)

    def loop() -> None:
        while not stop.wait(every):
            try:
                deliverer.deliver_due()
            except Exception:
                continue  # never let a hook problem surface in a run

    threading.Thread(target=loop, daemon=True, name="xp-hooks").start()
    return stop
