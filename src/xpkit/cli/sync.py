"""`xp sync`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("sync")
@click.argument("targets", nargs=-1, required=True)
@click.option("--watch", is_flag=True, help="Keep syncing on every save.")
def sync_cmd(targets: tuple[str, ...], watch: bool) -> None:
    """Mirror the project's git-visible files one way to each TARGET (HOST:PATH or PATH)
    with rsync; deletes only files it synced before and that are gone now.

    Example: xp sync gpu1:proj gpu2:proj --watch
    """
    from xpkit.sync import SyncResult, sync
    from xpkit.sync import watch as watch_project

    def report(result: SyncResult) -> None:
        if result.error:
            click.echo(f"{result.target}: FAILED ({result.error}); will retry", err=True)
        else:
            click.echo(f"{result.target}: {result.sent} files in sync, {result.deleted} deleted")

    if watch:
        try:
            watch_project(Path.cwd(), list(targets), report)
        except KeyboardInterrupt:
            click.echo("stopped watching")
        return
    results = sync(Path.cwd(), list(targets))
    for result in results:
        report(result)
    if any(r.error for r in results):
        sys.exit(1)
