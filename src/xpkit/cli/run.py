"""`xp run`: its options and help. The common forms are parsed without click, and
both parsers call cli/running.py's `run()` (see there why)."""

from __future__ import annotations

import click


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
    if to_queue and not dry_run:
        from xpkit.cli.options import parse_params, parse_sets, submit_runs

        submit_runs(target, priority=0, gpus=None, labels=(), params=parse_params(params),
                    sets=parse_sets(sets), name=name, tags=tags, no_git=no_git,
                    yes=yes)  # fmt: skip
        return
    from xpkit.cli.running import run

    run(list(target), name=name, tags=tags, params=params, sets=sets, dry_run=dry_run,
        yes=yes, no_git=no_git)  # fmt: skip
