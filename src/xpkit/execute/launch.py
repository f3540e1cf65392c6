"""`xp run`: take the snapshot once, then create and execute each run of a sweep.

Runs execute one after another in the foreground from the snapshot's worktree, so
editing the project while they run changes nothing they execute.
"""

from __future__ import annotations

import os
import shlex
import shutil
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

from xpkit import names
from xpkit.background import in_background
from xpkit.capture.env import capture_env
from xpkit.capture.git import Snapshot, repo_root, snapshot_exists
from xpkit.errors import ConfigError, RunError, StoreError
from xpkit.execute.prepared import execute_prepared
from xpkit.execute.runner import Outcome, resolve_program
from xpkit.execute.workspace import Workspace
from xpkit.hooks import events
from xpkit.hooks.outbox import deliver_briefly, start_background
from xpkit.redact import redact_argv
from xpkit.settings import XP_MAX_RUNS, Settings, line_of
from xpkit.store import rundir as rd
from xpkit.store.claims import me
from xpkit.store.create import NewRun, Provenance, create_run, ensure_runs_root
from xpkit.store.rundir import RunDir
from xpkit.suggest import close_to

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

    from xpkit.experiment import Experiment


class SweepRequest:
    """What the user asked `xp run` (or `xp submit`) for. A plain class, not a dataclass:
    `import dataclasses` would cost every `xp run` ~8 ms."""

    def __init__(
        self, experiment_file: Path | None = None, argv: list[str] | None = None,
        params: dict[str, Any] | None = None,
        sets: dict[str, Any] | None = None,  # --set config.path=value
        name: str | None = None, tags: list[str] | None = None, no_git: bool = False,
        yes: bool = False,  # more runs than XP_MAX_RUNS are fine
        queued: bool = False,  # for workers (maybe elsewhere): the program need not be here
    ) -> None:  # fmt: skip
        self.experiment_file, self.argv = experiment_file, argv
        self.params = params if params is not None else {}
        self.sets = sets if sets is not None else {}
        self.name = name
        self.tags = tags if tags is not None else []
        self.no_git, self.yes, self.queued = no_git, yes, queued


def count_runs(settings: Settings, request: SweepRequest) -> int:
    """How many runs `plan` would give, without expanding the grid."""
    if request.experiment_file is None:
        return 1
    from xpkit.experiment import load_experiment  # not imported for an ad-hoc command

    experiment = load_experiment(request.experiment_file, settings.root)
    _not_a_search(experiment)
    return experiment.count(request.params)


def _not_a_search(experiment: Experiment) -> None:
    if experiment.search is not None:
        raise ConfigError(
            f"{experiment.where} has a [search]: its runs are the trials of a search; start it "
            f"with `xp sweep {experiment.where}` (workers run the trials)"
        )


def plan(settings: Settings, request: SweepRequest, preview: int | None = None) -> list[NewRun]:
    """Validate the request and expand it into runs; nothing is written. `preview`:
    only the first runs of the grid, for --dry-run (then `count_runs` says how many)."""
    sweep = os.urandom(4).hex()
    if request.experiment_file is not None:
        from xpkit.experiment import check_unique_id, find_experiment_files, load_experiment

        experiment = load_experiment(request.experiment_file, settings.root)
        _not_a_search(experiment)
        check_unique_id(
            experiment,
            find_experiment_files(settings.root, skip=(settings.runs, settings.workdir)),
        )
        total = experiment.count(request.params)
        if preview is None and total > XP_MAX_RUNS.get() and not request.yes:
            raise ConfigError(
                f"{request.experiment_file}: {total:,} runs ({experiment.shape(request.params)}) "
                f"is more than XP_MAX_RUNS ({XP_MAX_RUNS.get():,}); pass --yes to create them "
                "all, narrow the grid with --param KEY=VALUE, or see them first with --dry-run"
            )
        env = run_env(settings, experiment)
        return [
            NewRun(
                expid=experiment.id,
                slug=names.slugify(request.name) if request.name else spec.slug,
                command=spec.command,
                argv=None,
                params=spec.params,
                config=spec.config,
                experiment=experiment_ref(settings, experiment),
                tags=[*experiment.tags, *request.tags],
                gpus=experiment.gpus,
                sweep=sweep,
                metrics_from=experiment.metrics_from,
                resumable=experiment.resumable,
                stop_signal=experiment.stop_signal,
                app=experiment.app,
                env=env,
            )
            for spec in experiment.expand(request.params, request.sets, first=preview)
        ]
    if not request.argv:
        raise RunError("nothing to run: give an experiment file or `-- COMMAND ...`")
    if request.sets:
        raise ConfigError(
            f"--set {next(iter(request.sets))}=...: an ad-hoc command has no config to set; "
            'give the config in an experiment file ([config] or config = "file")'
        )
    argv = list(request.argv)
    _check_program(settings, argv, here=not request.queued)
    command = shlex.join(argv)
    shown = redact_argv(argv)  # a secret in the command never names the run
    expid = names.command_experiment_id(shown)
    label = request.name or _command_slug(shown)
    slug = names.slugify(label)
    return [
        NewRun(
            expid=expid,
            slug=slug,
            command=command,
            argv=argv,
            params=dict(request.params),
            experiment={"name": label, "file": None},
            tags=list(request.tags),
            sweep=sweep,
            env=run_env(settings, None),
        )
    ]


def plan_rerun(
    settings: Settings, original: RunDir, *, require_snapshot: bool = True
) -> tuple[NewRun, Provenance]:
    """The same snapshot, command, params and config as `original`, as a new trial of
    its experiment; the host environment is captured afresh. `require_snapshot=False`
    (requeue) accepts a snapshot that only its bundle in the runs root holds."""
    run = original.read_run()
    git_info = original.read_optional(rd.GIT_JSON, {}) or {}
    snapshot = None
    project = settings.root
    if run.get("snapshot"):
        project = repo_root(settings.root) if require_snapshot else Path(run["project"])
        if require_snapshot and not snapshot_exists(project, run["snapshot"]):
            raise RunError(
                f"{original.name}: its snapshot {run['snapshot'][:12]} is not in the repository "
                f"{project}; run `xp rerun` in the project it came from (or fetch "
                "refs/xp/snapshots/* from there)"
            )
        snapshot = Snapshot(
            commit=git_info.get("commit"),
            branch=git_info.get("branch"),
            remote=git_info.get("remote"),
            dirty=bool(git_info.get("dirty")),
            snapshot=run["snapshot"],
            not_inlined=git_info.get("not_inlined", []),
            kept_out=git_info.get("kept_out", []),
            diff=original.file(rd.GIT_DIFF).read_text(encoding="utf-8", errors="replace"),
        )
    else:
        warnings.warn(
            f"{original.name} has no code provenance (--no-git): the rerun uses the files "
            "as they are now",
            stacklevel=2,
        )
    command, argv = original.executed_command(run)
    new = NewRun(
        expid=run["experiment_id"],
        slug=run.get("slug") or "rerun",
        command=command,
        argv=argv,
        params=run.get("params") or {},
        config=original.read_optional(rd.CONFIG_JSON),
        experiment=run.get("experiment") or {},
        tags=run.get("tags") or [],
        gpus=run.get("gpus_requested") or 0,
        sweep=os.urandom(4).hex(),
        rerun_of=original.name,
        metrics_from=run.get("metrics_from") or {},
        resumable=bool(run.get("resumable")),
        stop_signal=run.get("stop_signal") or "SIGTERM",
        app=run.get("app"),
        env=run.get("env"),
    )
    provenance = Provenance(project, snapshot, capture_env(), cwd=run.get("cwd") or ".")
    return new, provenance


def experiment_ref(settings: Settings, experiment: Experiment) -> dict[str, Any]:
    assert experiment.path is not None
    try:
        file = str(experiment.path.resolve().relative_to(settings.root))
    except ValueError:
        file = str(experiment.path.resolve())
    return {"name": experiment.name, "file": file, "command": experiment.command}


def run_env(settings: Settings, experiment: Experiment | None) -> dict[str, Any] | None:
    """The environment spec recorded in each run: the experiment file's `env`, else
    xp.toml's; checked against the project now, so a typo fails before any run exists."""
    request: Any = settings.env
    where, source = str(settings.source or "xp.toml"), settings.source
    if experiment is not None and experiment.env is not None:
        request, where, source = experiment.env, str(experiment.path), experiment.path
    if not request:  # none set, or `env = false`: envspec is not even imported
        return None
    from xpkit.envspec import EnvRequest, resolve

    if not isinstance(request, EnvRequest):
        return None
    text = source.read_text(encoding="utf-8", errors="replace") if source else ""
    spec = resolve(
        request, settings.root, lambda m: ConfigError(f"{where}{line_of(text, 'env')}: {m}")
    )
    return spec.to_json()


def _check_program(settings: Settings, argv: list[str], here: bool) -> None:
    """An ad-hoc command's program must exist (`here`: it runs on this machine); a path
    that is an experiment file without its suffix is a typo, not a command."""
    program = argv[0]
    suggestion = ""
    if len(argv) == 1 and not shutil.which(program):
        from xpkit.experiment import SUFFIX, find_experiment_files

        files = find_experiment_files(settings.root, skip=(settings.runs, settings.workdir))
        known = [os.path.relpath(f, Path.cwd()) for f in files]
        close = [k for k in known if k == program + SUFFIX or k.startswith(program)]
        close = close or close_to(program, known)
        if close:
            suggestion = f"; did you mean {close[0]}? (experiment files end in {SUFFIX})"
    if suggestion or here:
        try:
            resolve_program(program, argv, Path.cwd(), os.environ.get("PATH", ""))
        except RunError as e:
            raise ConfigError(f"{str(e).rstrip('.')}{suggestion}; no run was created") from None


def _command_slug(argv: list[str]) -> str:
    words = [os.path.basename(w) for w in argv[:4]]
    if words and words[0].startswith("python") and len(words) > 1:
        words = words[1:]
    return names.slugify(" ".join(words), limit=40)


class _RunsAhead:
    """A sweep's run directories, each created (in a thread) once the program of the run
    before it has started, so that its files and fsyncs overlap that program."""

    def __init__(self, runs_root: Path, planned: list[NewRun], provenance: Provenance,
                 holder: dict[str, Any]) -> None:  # fmt: skip
        self.runs_root, self.planned, self.provenance = runs_root, planned, provenance
        self.holder = holder
        self.pending: tuple[int, Callable[[], RunDir]] | None = None

    def create_after(self, index: int) -> None:
        if index + 1 < len(self.planned):
            self.pending = (index + 1, in_background(
                create_run, self.runs_root, self.planned[index + 1], self.provenance,
                claim=self.holder,
            ))  # fmt: skip

    def take(self, index: int) -> RunDir:
        """The directory of run `index`: the one created ahead, else created now."""
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] == index:
            return pending[1]()
        return create_run(self.runs_root, self.planned[index], self.provenance,
                          claim=self.holder)  # fmt: skip

    def abandon(self) -> None:
        """The sweep stopped (Ctrl-C, an error): a run created ahead is cancelled."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        try:
            run_dir = pending[1]()
        except Exception:
            return  # never created: nothing to record
        try:
            run_dir.update_run(status="cancelled", ended=rd.now(),
                               reason="not started: the sweep stopped before it")  # fmt: skip
        except (OSError, StoreError):
            pass  # its holder (this process) gone, it reads as lost: still not a result


def run_sweep(
    settings: Settings,
    planned: list[NewRun],
    provenance: Provenance,
    *,
    echo: bool = True,
    on_start: Callable[[RunDir], None] | None = None,
    on_end: Callable[[RunDir, Outcome], None] | None = None,
) -> list[tuple[RunDir, Outcome]]:
    """Create and execute each planned run in turn. Stops early if one is killed. Each
    run is held by this process (its claim) from before it appears until it ends.
    Once a run's program has started, the next run's directory is created while it
    executes (the program has the other core; a run's files and fsyncs cost ~1-3 ms of
    each run of a grid), so it shows `queued` meanwhile; if the sweep stops before it
    starts (Ctrl-C), it is recorded cancelled."""
    ensure_runs_root(settings.runs)
    snapshot = provenance.snapshot
    kept = tuple(snapshot.kept_out) if snapshot else ()
    workspace = Workspace(provenance.project, settings.workdir, settings.link, kept)
    user = f"sweep-{planned[0].sweep}-{os.getpid()}"
    # One worktree for the whole sweep, created before any run exists, so a failure
    # here leaves nothing half-made.
    tree = workspace.acquire(snapshot.snapshot, user) if snapshot else provenance.project
    results = []
    hooks = events.usable_specs(settings)  # says once which hooks cannot work
    delivery = start_background(settings.runs, hooks)
    holder = me("run").to_json()
    runs = _RunsAhead(settings.runs, planned, provenance, holder)
    try:
        for index, new in enumerate(planned):
            run_dir = runs.take(index)
            if hooks and new.sweep:
                events.remember_runs(settings, new.sweep, [run_dir.name], planned=len(planned))
                if index == 0:
                    events.sweep_submitted(settings, [run_dir], planned=len(planned))
                events.run_event(settings, run_dir, "run.started")
            if on_start:
                on_start(run_dir)
            try:
                outcome = execute_prepared(
                    run_dir,
                    nullcontext(tree),
                    gpus=None,
                    echo=echo,
                    capture=False,
                    raise_errors=True,
                    on_started=partial(runs.create_after, index),
                )
            finally:
                if hooks:
                    events.run_ended(settings, run_dir)
            results.append((run_dir, outcome))
            if on_end:
                on_end(run_dir, outcome)
            if outcome.status in ("killed", "cancelled"):
                break
    finally:
        runs.abandon()
        if snapshot:
            workspace.release(tree, user)
        if hooks and planned[0].sweep:
            events.finish_sweep(settings, planned[0].sweep)
        delivery.stop.set()
        if hooks:
            deliver_briefly(settings.runs, hooks, seconds=2.0, skip=delivery.failing)
    return results
