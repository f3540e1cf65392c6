"""`xp run`."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from xpkit.cli.options import parse_params, parse_sets

DRY_RUN_SHOWN = 20  # runs a --dry-run lists; it counts them all
T = TypeVar("T")

if TYPE_CHECKING:
    from xpkit.execute.launch import SweepRequest
    from xpkit.execute.runner import Outcome
    from xpkit.settings import Settings
    from xpkit.store.create import NewRun, Provenance
    from xpkit.store.rundir import RunDir


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True},
)
@click.option("--name", help="Human-readable part of the run names (the slug).")
@click.option("--tag", "tags", multiple=True, help="Tag the runs (repeatable).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a parameter; overrides the grid (repeatable).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=VALUE",
    help="Set a config value, parsed as JSON: --set optim.lr=1e-3 (repeatable).",
)
@click.option(
    "--queue", "to_queue", is_flag=True, help="Queue the runs for `xp worker` (xp submit)."
)
@click.option("--dry-run", is_flag=True, help="Print what would run; run and write nothing.")
@click.option("--yes", is_flag=True, help="Create more runs than XP_MAX_RUNS (1000).")
@click.option("--no-git", is_flag=True, help="Run outside git: no snapshot, no code provenance.")
@click.argument("target", nargs=-1, type=click.UNPROCESSED, required=True)
def run_cmd(
    name: str | None,
    tags: tuple[str, ...],
    params: tuple[str, ...],
    sets: tuple[str, ...],
    to_queue: bool,
    dry_run: bool,
    yes: bool,
    no_git: bool,
    target: tuple[str, ...],
) -> None:
    """Run EXPERIMENT_FILE's grid, or `-- COMMAND ...`, each run recorded in its own
    directory and executed from a snapshot of the code.

    Examples:

      xp run experiments/cifar/01_baseline.xp.toml --dry-run

      xp run experiments/cifar/01_baseline.xp.toml --param seed=3

      xp run experiments/cifar/02_config.xp.toml --set optim.lr=1e-3

      xp run --name quick -- python train.py --lr 0.1
    """
    from xpkit.settings import load_settings

    if to_queue and not dry_run:
        from xpkit.cli.options import submit_runs

        submit_runs(target, priority=0, gpus=None, labels=(), params=parse_params(params),
                    sets=parse_sets(sets), name=name, tags=tags, no_git=no_git,
                    yes=yes)  # fmt: skip
        return
    settings = load_settings()
    with ExitStack() as stack:
        provenance = None if dry_run else _start_provenance(settings, no_git, stack)
        try:
            from xpkit.execute.launch import SweepRequest, plan

            is_file = len(target) == 1 and target[0].endswith(".toml")
            request = SweepRequest(
                experiment_file=Path(target[0]) if is_file else None,
                argv=None if is_file else list(target),
                params=parse_params(params),
                sets=parse_sets(sets),
                name=name,
                tags=list(tags),
                no_git=no_git,
                yes=yes,
            )
            planned = plan(settings, request, preview=DRY_RUN_SHOWN if dry_run else None)
        except BaseException:
            if provenance is not None:  # the planning error is the one to show
                with suppress(BaseException):
                    provenance()
            raise
        if provenance is None:
            _show_dry_run(settings, request, planned)
            return
        results = _run_all(settings, planned, provenance())
    counts: dict[str, int] = {}
    for _, outcome in results:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    click.echo(f"\n{summary}. Runs are in {settings.runs} (`xp ls` lists them).", err=True)
    if counts.get("killed") or counts.get("cancelled"):
        sys.exit(130)
    if counts.get("failed") or counts.get("lost"):
        sys.exit(1)


def _show_dry_run(settings: Settings, request: SweepRequest, planned: list[NewRun]) -> None:
    from xpkit.execute.launch import count_runs
    from xpkit.redact import redact_command
    from xpkit.settings import XP_MAX_RUNS

    total = count_runs(settings, request)
    click.echo(f"{total:,} run(s) would run in {settings.runs}"
               + (f"; the first {len(planned)}:" if total > len(planned) else ":"))  # fmt: skip
    for new in planned:
        click.echo(f"  {new.expid}_NNN_{new.slug}: {redact_command(new.command)}")
    if total > XP_MAX_RUNS.get():
        click.echo(f"more than XP_MAX_RUNS ({XP_MAX_RUNS.get():,}): running them needs --yes")


def _start_provenance(
    settings: Settings, no_git: bool, stack: ExitStack
) -> Callable[[], Provenance]:
    """The snapshot's git processes run on another core while the caller imports the
    launcher and plans the runs (~15 ms of `xp run`'s start-up). What the snapshot needs
    is imported here first: two threads importing one circle of modules would deadlock."""
    import xpkit.store.create
    import xpkit.store.pins  # noqa: F401

    return _in_background(_provenance, settings, no_git, stack)


def _provenance(settings: Settings, no_git: bool, stack: ExitStack) -> Provenance:
    """The runs root made, a snapshot pin held in `stack` (`xp gc --snapshots` keeps the
    snapshot until the runs name it), then the snapshot and the host's capture."""
    from xpkit.store.create import capture_provenance, ensure_runs_root
    from xpkit.store.pins import snapshot_pin

    ensure_runs_root(settings.runs)
    pin = stack.enter_context(snapshot_pin(settings.runs))
    provenance = capture_provenance(settings, no_git)
    if provenance.snapshot is not None:
        pin.set(provenance.snapshot.snapshot)
    return provenance


def _in_background(work: Callable[..., T], *args: Any) -> Callable[[], T]:
    """Start work(*args) in a thread; the returned function waits for it and returns its
    value or raises its exception."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, work(*args)))
        except BaseException as e:  # handed to the waiting thread
            box.append((False, e))

    thread = threading.Thread(target=target, name="xp-provenance", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    return result


def _run_all(
    settings: Settings, planned: list[NewRun], provenance: Provenance
) -> list[tuple[RunDir, Outcome]]:
    from xpkit.cli.fmt import duration, styled_status
    from xpkit.execute.launch import run_sweep

    total = len(planned)
    counter = iter(range(1, total + 1))

    def on_start(run_dir: RunDir) -> None:
        header = f"── {run_dir.name} ({next(counter)}/{total}) "
        click.secho(header.ljust(79, "─"), err=True, bold=True)

    def on_end(run_dir: RunDir, outcome: Outcome) -> None:
        info = run_dir.read_run()
        reason = f" ({info['reason']})" if info.get("reason") else ""
        click.echo(
            f"{styled_status(info['status'])} {info['name']} in "
            f"{duration(info.get('duration') or 0)}{reason}",
            err=True,
        )

    return run_sweep(settings, planned, provenance, on_start=on_start, on_end=on_end)
