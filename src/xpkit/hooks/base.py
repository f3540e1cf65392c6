"""Events, hook configuration and the Hook ABC. Built-in hook types plus the
`xpkit.hooks` entry points; a hook never slows down or breaks a run."""

from __future__ import annotations

import abc
import os
import time as _time
from collections import namedtuple

from xpkit.errors import HookError, XpError

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

EVENTS = ("sweep.submitted", "sweep.finished", "run.started", "run.finished", "run.failed",
          "run.lost")  # fmt: skip
DEFAULT_EVENTS = {
    "todoist": ("sweep.submitted", "run.failed", "sweep.finished"),
    "webhook": ("sweep.finished", "run.failed", "run.lost"),
    "command": ("sweep.finished", "run.failed", "run.lost"),
}
BUILTIN = {
    "todoist": "xpkit.hooks.todoist:TodoistHook",
    "webhook": "xpkit.hooks.webhook:WebhookHook",
    "command": "xpkit.hooks.command:CommandHook",
}
COMMON_KEYS = {"type", "events", "rate_per_minute", "retry_hours"}


class Event:
    """What a hook is told. A plain class, not a dataclass: `xp run` imports this module,
    and `import dataclasses` would cost every run ~8 ms."""

    FIELDS = ("type", "sweep", "experiment", "runs", "host", "counts", "duration", "metrics",
              "reason", "planned", "id", "time")  # fmt: skip

    def __init__(
        self, type: str, sweep: str | None, experiment: dict[str, Any], runs: list[str],
        host: str = "", counts: dict[str, int] | None = None, duration: float | None = None,
        metrics: dict[str, dict[str, Any]] | None = None, reason: str | None = None,
        planned: int | None = None, id: str | None = None, time: float | None = None,
    ) -> None:  # fmt: skip
        self.type, self.sweep, self.experiment, self.runs = type, sweep, experiment, runs
        self.host = host
        self.counts = counts if counts is not None else {}
        self.duration = duration
        self.metrics = metrics if metrics is not None else {}
        self.reason = reason
        self.planned = planned  # runs the sweep will have, when not all exist yet
        self.id = id if id is not None else os.urandom(16).hex()
        self.time = time if time is not None else _time.time()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Event({self.to_json()!r})"

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(**{k: v for k, v in data.items() if k in cls.FIELDS})

    def summary_text(self) -> str:
        """One line a human reads in Slack or a task comment."""
        name = self.experiment.get("name") or self.experiment.get("id") or "runs"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items()))
        what = {
            "sweep.submitted": f"submitted {self.planned or len(self.runs)} run(s)",
            "sweep.finished": f"finished: {counts}" if counts else "finished",
        }.get(self.type, self.type.removeprefix("run."))
        target = self.runs[0] if self.type.startswith("run.") and self.runs else name
        reason = f" ({self.reason})" if self.reason else ""
        return f"xp: {target} {what}{reason}"


class HookSpec(namedtuple("HookSpec", "name type events options rate_per_minute retry_hours")):
    """One configured hook: name, type, events (tuple of str), options (dict),
    rate_per_minute and retry_hours (floats)."""

    __slots__ = ()


class Hook(abc.ABC):
    """Delivers events somewhere. `state` is a dict persisted per sweep (task IDs)."""

    def __init__(self, spec: HookSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    def deliver(self, *, event: Event, state: dict[str, Any], key: str) -> str:
        """Send one event; `key` is stable across retries (idempotency). Returns a
        short description of the response. Raises HookError (permanent) or
        TransientError (retry later)."""

    def check(self) -> list[str]:
        """Problems with this hook's configuration or environment (empty: fine)."""
        return []


class TransientError(HookError):
    """Try again later (network error, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def env_secret(spec: HookSpec, key: str, required: bool = True) -> str | None:
    """A secret named by the config (`token_env = "VAR"`), read from the environment."""
    variable = spec.options.get(key)
    if variable is None:
        if required:
            raise HookError(f"hook {spec.name}: '{key}' is required (the NAME of an env var)")
        return None
    value = os.environ.get(str(variable))
    if not value:
        raise HookError(f"hook {spec.name}: environment variable {variable} ({key}) is not set")
    return value


def parse_hooks(raw: Any, where: str) -> list[HookSpec]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise HookError(f"{where}: [hooks] must be tables [hooks.<name>]")
    specs = []
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise HookError(f"{where}: hooks.{name} must be a table")
        kind = table.get("type")
        if kind not in BUILTIN and kind not in _plugins():
            valid = ", ".join(sorted({*BUILTIN, *_plugins()}))
            raise HookError(f"{where}: hooks.{name}.type {kind!r} is unknown; valid: {valid}")
        events = table.get("events", list(DEFAULT_EVENTS.get(kind, EVENTS)))
        bad = [e for e in events if e not in EVENTS] if isinstance(events, list) else [events]
        if bad:
            valid = ", ".join(EVENTS)
            raise HookError(
                f"{where}: hooks.{name}.events: unknown event {bad[0]!r}; valid: {valid}"
            )
        try:
            rate = float(table.get("rate_per_minute", 20 if kind == "todoist" else 60))
            retry = float(table.get("retry_hours", 24))
        except (TypeError, ValueError):
            raise HookError(
                f"{where}: hooks.{name}: rate_per_minute and retry_hours are numbers"
            ) from None
        options = {k: v for k, v in table.items() if k not in COMMON_KEYS}
        specs.append(HookSpec(name, kind, tuple(events), options, rate, retry))
    return specs


def _plugins() -> dict[str, str]:
    from importlib import metadata

    try:
        return {e.name: e.value for e in metadata.entry_points(group="xpkit.hooks")}
    except Exception:
        return {}


def make_hook(spec: HookSpec) -> Hook:
    import importlib

    target = BUILTIN.get(spec.type) or _plugins()[spec.type]
    module, _, attr = target.partition(":")
    hook: Hook = getattr(importlib.import_module(module), attr)(spec)
    return hook


def hook_problems(spec: HookSpec) -> list[str]:
    """Why a configured hook cannot work (a missing token, a bad URL), in words."""
    try:
        return make_hook(spec).check()
    except XpError as e:  # a plugin that cannot be loaded or configured
        return [str(e)]
