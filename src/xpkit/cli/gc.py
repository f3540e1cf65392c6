"""`xp gc`."""

from __future__ import annotations

import click


@click.command("gc")
@click.option("--snapshots", is_flag=True, help="Also drop snapshot refs and bundles no run uses.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
def gc_cmd(snapshots: bool, dry_run: bool) -> None:
    """Remove what can always be recreated (idle worktrees, stale claims, half-made
    runs, stale index entries). Never touches a run directory.

    Example: xp gc --snapshots --dry-run
    """
    from xpkit.capture.git import repo_root
    from xpkit.errors import GitError
    from xpkit.gc import collect
    from xpkit.settings import load_settings

    settings = load_settings()
    try:
        project = repo_root(settings.root)
    except GitError:
        project = None
    lines = collect(settings.runs, settings.workdir, project, snapshots=snapshots,
                    dry_run=dry_run)  # fmt: skip
    for line in lines:
        click.echo(line)
    click.echo("nothing to remove" if not lines else f"{len(lines)} item(s)")
