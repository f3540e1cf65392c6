"""`xp sweep`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from xpkit.sweep.status import SweepStatus

DETACH_CHECK = 2.0  # seconds a detached controller must live to count as started


@click.command("sweep")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Show the trials, the best so far and the counts; start nothing.",
)
@click.option("--detach", is_flag=True, help="Leave the controller running in the background.")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Rebuild the study from its trials' runs (the journal is kept aside).",
)
@click.option("--json", "as_json", is_flag=True, help="With --status: one JSON document.")
def sweep_cmd(file: str, show_status: bool, detach: bool, rebuild: bool, as_json: bool) -> None:
    """Search FILE's [search] with Optuna: keep `parallel` trials queued for the workers
    (`xp worker`, local or Ray), stop hopeless ones (the pruner), until `trials` are
    done or the budget is spent. Each trial is an ordinary run of the experiment.

    Stopped at any moment (Ctrl-C, kill -9, a reboot), `xp sweep FILE` again continues
    the same study: queued and running trials go on meanwhile.

    Examples:

      xp sweep experiments/cifar/04_search.xp.toml

      xp sweep experiments/cifar/04_search.xp.toml --detach

      xp sweep experiments/cifar/04_search.xp.toml --status
    """
    from xpkit.errors import ConfigError
    from xpkit.experiment import load_experiment
    from xpkit.settings import load_settings

    if as_json and not show_status:
        raise click.UsageError("--json goes with --status")
    if show_status and (detach or rebuild):
        raise click.UsageError("--status starts nothing: it does not go with --detach or --rebuild")

    settings = load_settings()
    experiment = load_experiment(Path(file), settings.root)
    if experiment.search is None:
        raise ConfigError(
            f"{file} has no [search] table: add one (method, metric, goal, trials and "
            "[search.params]; README: Search), or run its grid with `xp submit`"
        )
    if show_status:
        from xpkit.sweep.status import sweep_status

        status = sweep_status(settings, experiment)
        if as_json:
            click.echo(json.dumps(status.to_json(), indent=2, default=str))
        else:
            _print_status(file, status)
        return
    if detach:
        _detach(settings.runs, experiment.id, file, rebuild)
        return
    from xpkit.sweep.controller import Controller

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    controller = Controller(
        settings,
        experiment,
        file,
        rebuild=rebuild,
        say=lambda text: click.echo(f"xp sweep: {text}"),
    )
    try:
        controller.run()
    except KeyboardInterrupt:
        click.echo(
            f"xp sweep: controller stopped; queued and running trials go on. "
            f"`xp sweep {file}` continues the study",
            err=True,
        )
        sys.exit(130)


def _detach(runs_root: Path, expid: str, file: str, rebuild: bool) -> None:
    from xpkit import names
    from xpkit.errors import QueueError
    from xpkit.store.create import ensure_runs_root

    ensure_runs_root(runs_root)
    log = runs_root / names.META_DIR / "sweeps" / f"{expid}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "xpkit.cli.main", "sweep", file, *(["--rebuild"] * rebuild)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + DETACH_CHECK
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    if process.poll() not in (None, 0):
        with open(log, "rb") as f:
            f.seek(start)
            said = f.read().decode(errors="replace").strip()
        raise QueueError(f"the controller did not start: {said.removeprefix('xp: error: ')}")
    click.echo(f"controller started (pid {process.pid}); its log: {log}")
    click.echo(f"`xp sweep {file} --status` shows the trials", err=True)


def _print_status(file: str, status: SweepStatus) -> None:
    from xpkit.cli.fmt import styled_status
    from xpkit.sweep.controller import engine_value

    search = status.search
    planned = search.planned
    click.echo(
        f"{file}: {search.method}, {search.goal} {search.metric}, "
        f"{planned if planned is not None else 'budget-bound'} trials, "
        f"parallel {search.parallel}, pruner {search.pruner['type']}"
    )
    controller = status.controller
    if controller:
        click.echo(f"controller: running, pid {controller.get('pid')} on {controller.get('host')}")
    else:
        click.echo(f"controller: not running (`xp sweep {file}` continues the study)")
    counts = status.counts()
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none yet"
    click.echo(
        f"trials: {len(status.rows)}" + (f" of {planned}" if planned else "") + f" ({shown})"
    )
    best = status.best
    if best is not None:
        params = ", ".join(f"{k}={engine_value(v)}" for k, v in best.params.items())
        click.echo(
            f"best so far: trial {best.key} {best.run}: {search.metric} "
            f"{best.value:.6g} with {params}"
        )
    if not status.rows:
        return
    names = list(search.params)
    click.echo("")
    header = ["trial", "run", "status", search.metric, *names]
    lines = [
        [
            str(r.key),
            r.run,
            r.status,
            "-" if r.value is None else f"{r.value:.6g}",
            *(engine_value(r.params.get(n, "-")) for n in names),
        ]
        for r in status.rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in lines:
        cells = [c.ljust(w) for c, w in zip(line, widths)]
        cells[2] = styled_status(line[2]) + " " * (widths[2] - len(line[2]))
        click.echo("  ".join(cells).rstrip())
