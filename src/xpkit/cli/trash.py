"""`xp rm`, `xp trash ls|restore|empty`."""

from __future__ import annotations

import time

import click

from xpkit.cli.browse import STATUS_CHOICE
from xpkit.errors import StoreError


@click.command("rm")
@click.argument("refs", nargs=-1)
@click.option("--exp", "exp", metavar="ID|FILE", help="Every run of this experiment.")
@click.option(
    "--status", "statuses", multiple=True, type=STATUS_CHOICE, help="Runs with this status."
)
@click.option("--older-than", metavar="AGE", help="Only runs created longer ago (30d, 12h).")
@click.option("--reason", default="xp rm", help="Why, shown by `xp trash ls`.")
@click.option("--yes", is_flag=True, help="Do not ask.")
def rm_cmd(refs: tuple[str, ...], exp: str | None, statuses: tuple[str, ...],
           older_than: str | None, reason: str, yes: bool) -> None:  # fmt: skip
    """Move runs to the trash (nothing is deleted; `xp trash restore` brings them back).

    Example: xp rm --status failed --older-than 30d
    """
    from xpkit.cli.browse import _experiment_filter
    from xpkit.settings import load_settings
    from xpkit.store.query import Selection, select_runs
    from xpkit.store.trash import move_to_trash

    runs_root = load_settings().runs
    selection = Selection(refs, _experiment_filter(exp), statuses, older_than)
    if not refs and not selection.filters:
        raise StoreError("nothing to remove: give runs, --exp, --status or --older-than")
    targets = select_runs(runs_root, selection)
    if not targets:
        click.echo(f"no run matches {selection.filters}: nothing moved")
        return
    for run_dir in targets:
        click.echo(f"  {run_dir.name}")
    if not yes and not click.confirm(f"Move these {len(targets)} run(s) to the trash?"):
        click.echo("nothing moved")
        return
    for run_dir in targets:
        move_to_trash(runs_root, run_dir, reason)
    click.echo(f"moved {len(targets)} run(s) to the trash (`xp trash restore RUN` undoes it)")


@click.group("trash")
def trash_cmd() -> None:
    """The runs root's trash: list, restore, empty.

    Example: xp trash ls
    """


@trash_cmd.command("ls")
def trash_ls_cmd() -> None:
    """List trashed runs with when and why. Example: xp trash ls"""
    from xpkit.cli.fmt import age
    from xpkit.settings import load_settings
    from xpkit.store.trash import trashed

    items = trashed(load_settings().runs)
    if not items:
        click.echo("the trash is empty")
    for item in items:
        click.echo(f"{item.name}  trashed {age(item.trashed)} by {item.by}: {item.reason}")


@trash_cmd.command("restore")
@click.argument("names", nargs=-1, required=True)
def trash_restore_cmd(names: tuple[str, ...]) -> None:
    """Put trashed runs back under their names. Example: xp trash restore k3j9x2_004"""
    from xpkit.settings import load_settings
    from xpkit.store.query import resolve_run
    from xpkit.store.trash import restore, trash_dir

    runs_root = load_settings().runs
    for ref in names:  # a name, a unique prefix or EXPID/TRIAL, as for runs
        name = resolve_run(runs_root, ref, folder=trash_dir(runs_root)).name
        restore(runs_root, name)
        click.echo(f"restored {name}")


@trash_cmd.command("empty")
@click.option("--older-than", metavar="AGE", help="Only runs trashed longer ago (30d, 12h).")
@click.option("--yes", is_flag=True, help="Do not ask.")
def trash_empty_cmd(older_than: str | None, yes: bool) -> None:
    """Delete trashed runs for good: the only command that deletes run data.

    Example: xp trash empty --older-than 30d
    """
    from xpkit.settings import load_settings
    from xpkit.store.trash import empty, parse_age, trashed

    runs_root = load_settings().runs
    age = parse_age(older_than) if older_than else None
    doomed = [t for t in trashed(runs_root) if age is None or time.time() - t.trashed >= age]
    if not doomed:
        click.echo("nothing to delete")
        return
    for item in doomed:
        click.echo(f"  {item.name}")
    if not yes and not click.confirm(f"Delete these {len(doomed)} run(s) for good?"):
        click.echo("nothing deleted")
        return
    click.echo(f"deleted {len(empty(runs_root, age))} run(s) for good")
