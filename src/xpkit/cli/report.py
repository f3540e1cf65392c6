"""`xp report`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xpkit.cli.browse import STATUS_CHOICE


@click.command("report")
@click.argument("targets", nargs=-1)
@click.option(
    "--all", "all_files", is_flag=True, help="Report every experiment file of the project."
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a report is not up to date.")
@click.option("--template-context", is_flag=True, help="Print what a report template can use.")
@click.option("--metric", "metrics", multiple=True, help="Only these metrics (repeatable).")
@click.option("--group-by", multiple=True, help="Group runs by these params only (repeatable).")
@click.option("--ignore", multiple=True, help="Params whose runs are repeats (default: seed).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=STATUS_CHOICE,
    help="Statuses that count (default: finished).",
)
@click.option("--sort", "sort", metavar="METRIC", help="Order configurations best first by METRIC.")
def report_cmd(
    targets: tuple[str, ...], all_files: bool, check: bool, template_context: bool,
    metrics: tuple[str, ...], group_by: tuple[str, ...], ignore: tuple[str, ...],
    statuses: tuple[str, ...], sort: str | None,
) -> None:  # fmt: skip
    """Write EXPERIMENT_FILE's report beside it (NN_name.md, curves in NN_name.assets/),
    or print a report of the given RUNs to stdout.

    A template NN_name.md.j2 beside the experiment file replaces the default.

    Examples: xp report experiments/cifar/01_baseline.xp.toml; xp report --all --check
    """
    from xpkit.experiment import SUFFIX, find_experiment_files
    from xpkit.report.make import experiment_report, runs_report, stale_files, write_report
    from xpkit.report.render import CONTEXT_DOC, ReportOptions
    from xpkit.report.table import DEFAULT_IGNORED
    from xpkit.settings import load_settings
    from xpkit.store.query import resolve_run

    if template_context:
        width = max(len(k) for k in CONTEXT_DOC)
        for key, text in CONTEXT_DOC.items():
            click.echo(f"{key:<{width}}  {text}")
        return
    settings = load_settings()
    options = ReportOptions(
        metrics=metrics, group_by=group_by, ignore=ignore or DEFAULT_IGNORED,
        statuses=statuses or ("finished",), sort=sort,
    )  # fmt: skip
    # No option given: a report is made again with the options recorded in it.
    explicit = bool(metrics or group_by or ignore or statuses or sort)
    files = [Path(t) for t in targets if t.endswith(SUFFIX)]
    run_refs = [t for t in targets if not t.endswith(SUFFIX)]
    if all_files:
        files += find_experiment_files(settings.root, skip=(settings.runs, settings.workdir))
    if run_refs:
        if files:
            raise click.UsageError("give experiment files or runs, not both")
        names = [resolve_run(settings.runs, ref).name for ref in run_refs]
        click.echo(runs_report(settings, names, options).markdown, nl=False)
        return
    if not files:
        if all_files:
            click.echo(f"no experiment files (*.xp.toml) in {settings.root}")
            return
        raise click.UsageError("give an experiment file, --all, or runs")
    stale = []
    for path in files:
        report, markdown = experiment_report(settings, path, options if explicit else None)
        if check:
            stale += stale_files(report, markdown)
            continue
        written = write_report(report, markdown)
        state = (
            f"updated ({len(written)} file{'s' if len(written) != 1 else ''})"
            if written
            else "up to date"
        )
        click.echo(f"{markdown}: {state}")
    if check:
        for path in stale:
            click.echo(f"stale: {path}")
        if stale:
            click.echo("reports are not up to date: run `xp report` and commit them", err=True)
            sys.exit(1)
        click.echo(f"{len(files)} report(s) up to date")
