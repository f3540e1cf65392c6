"""`xp ui`."""

from __future__ import annotations

import secrets
from pathlib import Path

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
    help="Address to listen on (0.0.0.0: every address; the token still protects it).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use the token in this file (its first line) instead of a random one. Env: XP_UI_TOKEN.",
)
@click.option(
    "--no-token",
    is_flag=True,
    help="Serve without a token: only for a machine no one else uses.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a browser.")
def ui_cmd(
    port: int, host: str, token_file: Path | None, no_token: bool, open_browser: bool
) -> None:
    """Serve a read-only dashboard of the runs: runs table, run pages with live logs
    and charts, comparisons, experiment reports and the queue.

    Example: xp ui --open
    """
    from xpkit.settings import XP_UI_TOKEN, load_settings
    from xpkit.web.server import serve

    token = (
        None if no_token else _token(token_file) or XP_UI_TOKEN.get() or secrets.token_urlsafe(24)
    )
    serve(load_settings(), host=host, port=port, token=token, open_browser=open_browser,
          announce=lambda line: click.echo(line))  # fmt: skip


def _token(path: Path | None) -> str | None:
    if path is None:
        return None
    from xpkit.errors import ConfigError

    try:
        lines = path.read_text().strip().splitlines()
    except OSError as e:
        raise ConfigError(f"--token-file {path}: cannot read: {e.strerror}") from None
    token = lines[0].strip() if lines else ""
    if len(token) < 8:
        raise ConfigError(
            f"--token-file {path}: the token on its first line must be 8 or more characters"
        )
    return token
