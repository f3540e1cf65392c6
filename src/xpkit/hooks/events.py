"""Where runs and sweeps meet hooks: build events from run directories and queue them.
Every function here swallows hook problems with a warning: a run never fails, waits
or slows down because of a notification."""

from __future__ import annotations

import json
import os
import warnings

from xpkit.errors import XpError
from xpkit.hooks.base import Event, HookSpec, parse_hooks
from xpkit.hooks.outbox import emit, sweep_state_path
from xpkit.settings import Settings
from xpkit.store import rundir as rd
from xpkit.store.locks import create_exclusive, exclusive_lock
from xpkit.store.rundir import RunDir, write_json_atomic

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any


def specs_of(settings: Settings) -> list[HookSpec]:
    try:
        return parse_hooks(settings.hooks, str(settings.source or "xp.toml"))
    except XpError as e:
        warnings.warn(f"hooks disabled: {e}", stacklevel=2)
        return []


def usable_specs(settings: Settings) -> list[HookSpec]:
    """The hooks, each checked once (a missing token, a bad URL): one that cannot work
    is said at the start of `xp run`/`xp worker`; its events still go to the outbox,
    where they become dead letters saying why (`xp hooks ls`)."""
    from xpkit.hooks.base import hook_problems

    specs = specs_of(settings)
    for spec in specs:
        for problem in hook_problems(spec):
            warnings.warn(f"hook {spec.name} cannot work: {problem} (`xp hooks check`)",
                          stacklevel=2)  # fmt: skip
    return specs


def _experiment(info: dict[str, Any]) -> dict[str, Any]:
    experiment = info.get("experiment") or {}
    return {"id": info.get("experiment_id"), "name": experiment.get("name"),
            "file": experiment.get("file")}  # fmt: skip


def remember_runs(
    settings: Settings, sweep: str, names: list[str], planned: int | None = None
) -> None:
    """The sweep's runs so far (and how many it will have): whoever ends the last one
    announces sweep.finished."""
    state_path = sweep_state_path(settings.runs, sweep)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    # Read-modify-write under the sweep's lock: submitters of one sweep take turns, and
    # hook deliverers keep their own files (outbox.hook_state_path).
    with exclusive_lock(state_path.with_suffix(".lock")):
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = {}
        state["runs"] = [*state.get("runs", []), *names]
        if planned is not None:
            state["planned"] = planned
        write_json_atomic(state_path, state)


def sweep_submitted(settings: Settings, runs: list[RunDir], planned: int | None = None) -> None:
    """`runs` created so far (all of them for xp submit); `planned`: how many in all."""
    specs = specs_of(settings)
    if not specs or not runs:
        return
    info = runs[0].read_run()
    event = Event("sweep.submitted", info.get("sweep"), _experiment(info),
                  [r.name for r in runs], host=os.uname().nodename, planned=planned)  # fmt: skip
    emit(settings.runs, specs, event)


def run_event(settings: Settings, run_dir: RunDir, kind: str) -> None:
    """run.started / run.finished / run.failed / run.lost, then sweep.finished when
    this was the last run of its sweep to end."""
    specs = specs_of(settings)
    if not specs:
        return
    info = run_dir.read_run()
    summary = run_dir.read_optional(rd.SUMMARY_JSON, {}) or {}
    emit(settings.runs, specs, Event(kind, info.get("sweep"), _experiment(info), [run_dir.name],
                                     host=os.uname().nodename, duration=info.get("duration"),
                                     metrics={run_dir.name: summary} if summary else {},
                                     reason=info.get("reason")))  # fmt: skip
    if kind != "run.started" and info.get("sweep"):
        _maybe_sweep_finished(settings, specs, info["sweep"])


def run_ended(settings: Settings, run_dir: RunDir) -> None:
    """The event for how a run ended (killed and cancelled count as failed; a trial a
    sweep pruned is no failure and says nothing, but may end its sweep)."""
    info = run_dir.read_run()
    status = rd.status_of(run_dir, info)
    if status == "pruned":
        specs = specs_of(settings)
        if specs and info.get("sweep"):
            _maybe_sweep_finished(settings, specs, info["sweep"])
        return
    kind = {"finished": "run.finished", "lost": "run.lost"}.get(status, "run.failed")
    if status not in rd.ACTIVE:
        run_event(settings, run_dir, kind)


def finish_sweep(settings: Settings, sweep: str) -> None:
    """Announce the end of a sweep that stopped early (xp run interrupted)."""
    specs = specs_of(settings)
    if specs:
        _maybe_sweep_finished(settings, specs, sweep, force=True)


def _maybe_sweep_finished(
    settings: Settings, specs: list[HookSpec], sweep: str, force: bool = False
) -> None:
    state_path = sweep_state_path(settings.runs, sweep)
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return
    names = state.get("runs", [])
    if not names or (not force and len(names) < state.get("planned", 0)):
        return  # runs of this sweep are still to be created
    statuses: dict[str, int] = {}
    metrics: dict[str, dict[str, Any]] = {}
    durations: list[float] = []
    for name in names:
        run_dir = RunDir(settings.runs / name)
        try:
            info = run_dir.read_run()
        except XpError:
            continue
        status = rd.status_of(run_dir, info)
        if status in rd.ACTIVE:
            return
        statuses[status] = statuses.get(status, 0) + 1
        durations.append(info.get("duration") or 0.0)
        summary = run_dir.read_optional(rd.SUMMARY_JSON, {}) or {}
        if status == "finished" and summary:
            metrics[name] = summary
    marker = state_path.with_suffix(".finished")
    try:  # exactly one process announces the end, even with several workers
        if not create_exclusive(marker):
            return
    except OSError:
        return
    first = RunDir(settings.runs / names[0]).read_run()
    emit(settings.runs, specs, Event("sweep.finished", sweep, _experiment(first), names,
                                     host=os.uname().nodename, counts=statuses,
                                     duration=sum(durations), metrics=metrics))  # fmt: skip
