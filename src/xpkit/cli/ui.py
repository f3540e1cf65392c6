"""`xp ui`."""

from __future__ import annotations

import click


@click.command("ui")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback lets others read your runs: add --token.",
)
@click.option(
    "--token",
    metavar="SECRET",
    help="Require this secret on every request (the printed URL carries it). Env: XP_UI_TOKEN.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a browser.")
def ui_cmd(port: int, host: str, token: str | None, open_browser: bool) -> None:
    """Serve a read-only dashboard of the runs: runs table, run pages with live logs
    and charts, comparisons, experiment reports and the queue.

    Example: xp ui --open
    """
    from xpkit.settings import XP_UI_TOKEN, load_settings
    from xpkit.web.server import serve

    token = token or XP_UI_TOKEN.get() or None
    serve(load_settings(), host=host, port=port, token=token, open_browser=open_browser,
          announce=lambda line: click.echo(line))  # fmt: skip
