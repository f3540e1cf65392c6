"""Executors: where queued runs go. A backend implements one method, `_submit`; the
base class does the rest. Built-ins plus the `xpkit.executors` entry points, loaded
lazily; a broken plugin warns and is skipped."""

from __future__ import annotations

import abc
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from xpkit.errors import QueueError
from xpkit.store.rundir import RunDir

ENTRY_POINT_GROUP = "xpkit.executors"


@dataclass
class Job:
    """A created run waiting for, or holding, resources."""

    run_dir: RunDir
    priority: int = 0
    gpus: int = 0
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.run_dir.name


class Executor(abc.ABC):
    """Takes created runs and makes them execute somewhere."""

    name = "base"

    def submit(self, job: Job) -> Job:
        return self.map([job])[0]

    def map(self, jobs: list[Job]) -> list[Job]:
        if not jobs:
            return []
        for job in jobs:
            if job.gpus < 0:
                raise QueueError(f"{job.name}: gpus must be >= 0, got {job.gpus}")
        return self._submit(jobs)

    @abc.abstractmethod
    def _submit(self, jobs: list[Job]) -> list[Job]:
        """Hand the jobs to the backend; return them (with backend details filled in)."""


def builtin_executors() -> dict[str, str]:
    return {
        "local": "xpkit.queue.local:LocalExecutor",
        "debug": "xpkit.queue.local:DebugExecutor",
    }


def load_executor(name: str, **options: Any) -> Executor:
    """An executor by name: built-in, or from an installed plugin's entry point."""
    import importlib

    targets = builtin_executors()
    try:
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            targets.setdefault(entry.name, entry.value)
    except Exception as e:  # a broken distribution must not break xp
        warnings.warn(f"could not read {ENTRY_POINT_GROUP} entry points: {e}", stacklevel=2)
    if name not in targets:
        raise QueueError(f"unknown executor {name!r}; available: {', '.join(sorted(targets))}")
    module_name, _, attr = targets[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as e:
        raise QueueError(f"executor {name!r} ({targets[name]}) failed to load: {e}") from e
    executor: Executor = cls(**options)
    return executor
