"""A local worker builds a queued run's Python environment while the run waits, so the
run never holds a GPU during an install: the run may start once its environment is
ready (or its build failed, which then fails the run at once, holding nothing)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xpkit.envspec import EnvSpec
from xpkit.errors import XpError
from xpkit.execute.prepared import snapshot_reader
from xpkit.settings import Settings
from xpkit.store.rundir import RunDir

READY, BUILDING = "ready", "building"


@dataclass
class _State:
    phase: str
    file: str = ""
    error: str | None = None


class EnvPreparer:
    def __init__(self, settings: Settings, say: Callable[[str], None]) -> None:
        self.settings = settings
        self.say = say
        self.states: dict[str, _State] = {}
        self.lock = threading.Lock()

    def waiting(self, name: str) -> str | None:
        """Why run `name` cannot start yet (its environment is being built), or None.
        The first look starts the build in the background."""
        with self.lock:
            state = self.states.get(name)
        if state is None:
            state = self._start(name)
        return (
            f"building its Python environment ({state.file})" if state.phase == BUILDING else None
        )

    def failure(self, name: str) -> str | None:
        with self.lock:
            state = self.states.get(name)
        return state.error if state else None

    def forget(self, name: str) -> None:
        with self.lock:
            self.states.pop(name, None)

    def _start(self, name: str) -> _State:
        try:
            info = RunDir(self.settings.runs / name).read_run()
        except XpError:
            info = {}
        if not info.get("env"):
            state = _State(READY)
        else:
            state = _State(BUILDING, str(info["env"].get("file")))
            threading.Thread(target=self._build, args=(name, info, state), daemon=True,
                             name=f"xp-env-{name}").start()  # fmt: skip
        with self.lock:
            self.states[name] = state
        return state

    def _build(self, name: str, info: dict[str, Any], state: _State) -> None:
        from xpkit.execute import envs

        try:
            spec = EnvSpec.from_json(info["env"])
            read, where = snapshot_reader(self.settings, info)
            contents = envs.read_contents(spec, read, where)
            envs.ensure(spec, contents, say=lambda text: self.say(f"{name}: {text}"))
        except Exception as e:  # the run fails with it when it starts
            state.error = str(e) if isinstance(e, XpError) else f"{type(e).__name__}: {e}"
        state.phase = READY
