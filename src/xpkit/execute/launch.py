"""`xp run`: take the snapshot once, then create and execute each run of a sweep.

Runs execute one after another in the foreground from the snapshot's worktree, so
editing the project while they run changes nothing they execute.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import RunError
from xpkit.execute.runner import Outcome, Runner
from xpkit.execute.workspace import Workspace
from xpkit.experiment import (
    Experiment,
    check_unique_id,
    find_experiment_files,
    load_experiment,
)
from xpkit.settings import Settings
from xpkit.store.create import NewRun, Provenance, create_run, ensure_runs_root
from xpkit.store.rundir import RunDir


@dataclass
class SweepRequest:
    """What the user asked `xp run` (or `xp submit`) for."""

    experiment_file: Path | None = None
    argv: list[str] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    no_git: bool = False


@dataclass
class PlannedRun:
    new: NewRun

    def describe(self) -> str:
        return self.new.command


def plan(settings: Settings, request: SweepRequest) -> list[PlannedRun]:
    """Validate the request and expand it into runs; nothing is written."""
    sweep = os.urandom(4).hex()
    if request.experiment_file is not None:
        experiment = load_experiment(request.experiment_file)
        check_unique_id(
            experiment,
            find_experiment_files(settings.root, skip=(settings.runs, settings.workdir)),
        )
        return [
            PlannedRun(
                NewRun(
                    expid=experiment.id,
                    slug=names.slugify(request.name) if request.name else spec.slug,
                    command=spec.command,
                    argv=None,
                    params=spec.params,
                    experiment=_experiment_ref(settings, experiment),
                    tags=[*experiment.tags, *request.tags],
                    gpus=experiment.gpus,
                    sweep=sweep,
                )
            )
            for spec in experiment.expand(request.params)
        ]
    if not request.argv:
        raise RunError("nothing to run: give an experiment file or `-- COMMAND ...`")
    argv = list(request.argv)
    command = shlex.join(argv)
    expid = names.command_experiment_id(argv)
    slug = names.slugify(request.name or _command_slug(argv))
    label = request.name or _command_slug(argv)
    return [
        PlannedRun(
            NewRun(
                expid=expid,
                slug=slug,
                command=command,
                argv=argv,
                params=dict(request.params),
                experiment={"name": label, "file": None},
                tags=list(request.tags),
                sweep=sweep,
            )
        )
    ]


def _experiment_ref(settings: Settings, experiment: Experiment) -> dict[str, Any]:
    assert experiment.path is not None
    try:
        file = str(experiment.path.resolve().relative_to(settings.root))
    except ValueError:
        file = str(experiment.path.resolve())
    return {"name": experiment.name, "file": file, "command": experiment.command}


def _command_slug(argv: list[str]) -> str:
    words = [os.path.basename(w) for w in argv[:4]]
    if words and words[0].startswith("python") and len(words) > 1:
        words = words[1:]
    return names.slugify(" ".join(words), limit=40)


def run_sweep(
    settings: Settings,
    planned: list[PlannedRun],
    provenance: Provenance,
    *,
    echo: bool = True,
    on_start: Callable[[RunDir], None] | None = None,
    on_end: Callable[[RunDir, Outcome], None] | None = None,
) -> list[tuple[RunDir, Outcome]]:
    """Create and execute each planned run in turn. Stops early if one is killed."""
    ensure_runs_root(settings.runs)
    snapshot = provenance.snapshot
    workspace = Workspace(provenance.project, settings.workdir, settings.link)
    user = f"sweep-{planned[0].new.sweep}-{os.getpid()}"
    # One worktree for the whole sweep, created before any run exists, so a failure
    # here leaves nothing half-made.
    tree = workspace.acquire(snapshot.snapshot, user) if snapshot else provenance.project
    results = []
    try:
        for item in planned:
            run_dir = create_run(settings.runs, item.new, provenance)
            if on_start:
                on_start(run_dir)
            cwd = tree / provenance.cwd
            runner = Runner(run_dir, cwd if cwd.is_dir() else tree, echo=echo)
            outcome = runner.execute()
            results.append((run_dir, outcome))
            if on_end:
                on_end(run_dir, outcome)
            if outcome.status == "killed":
                break
    finally:
        if snapshot:
            workspace.release(tree, user)
    return results
