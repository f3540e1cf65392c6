"""`xp top`."""

from __future__ import annotations

import shutil
import sys

import click


@click.command("top")
@click.option("--once", is_flag=True, help="Print one screen as plain text and exit.")
@click.option("--interval", default=1.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(0.2, 60), help="Seconds between refreshes.")  # fmt: skip
@click.option(
    "--metric", metavar="NAME", help="The metric of the runs' trend (default: each run's first)."
)
def top_cmd(once: bool, interval: float, metric: str | None) -> None:
    """The lab's GPUs, queue and runs, live: each GPU of every live worker's host and who
    holds it (an xp run, or a colleague's process: user, pid, command), the queue and
    why each run waits, running and recently ended runs with their latest metric and
    trend, a sweep's trials under it. Enter opens a run (its log following live,
    metrics, params); `?` lists the keys.

    Without a terminal (piped, cron) it prints one screen, as --once does.

    Examples:

      xp top

      xp top --metric val_loss

      xp top --once > status.txt
    """
    from xpkit.settings import load_settings
    from xpkit.tui.model import TopModel

    settings = load_settings()
    model = TopModel(settings.runs, metric)
    if once or not (sys.stdin.isatty() and sys.stdout.isatty()):
        from xpkit.tui.plain import render

        model.refresh(complete=True)
        click.echo(render(model, width=shutil.get_terminal_size((100, 24)).columns), nl=False)
        return
    try:
        from xpkit.tui.app import TopApp
    except ImportError as e:
        from xpkit.errors import ConfigError

        raise ConfigError(
            f"xp top needs Textual ({e.name} is missing): pip install 'xpkit[tui]'; "
            "`xp top --once` prints one screen without it"
        ) from None
    TopApp(settings, model, interval).run()
