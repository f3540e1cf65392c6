"""`xp init`, `xp new`."""

from __future__ import annotations

from pathlib import Path

import click

from xpkit.capture.git import repo_root
from xpkit.scaffold import init_project, new_experiment, reid_experiment, runs_made_from
from xpkit.settings import load_settings


@click.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing xp.toml.")
def init_cmd(force: bool) -> None:
    """Write xp.toml in the root of this git repository and ignore the runs root.

    Example: xp init
    """
    from xpkit.errors import GitError

    try:
        root = repo_root(Path.cwd())
    except GitError:
        raise GitError(
            f"{Path.cwd()} is not inside a git repository. xpkit ties every run to the exact "
            "code it ran: run `git init && git add -A && git commit -m init` first, then "
            "`xp init` (single runs can still go without git: `xp run --no-git -- CMD`)"
        ) from None
    for line in init_project(root, force=force):
        click.echo(line)
    click.echo(
        "\nNext:\n"
        "  xp new experiments/<topic>/01_<name>     # write an experiment file, then edit it\n"
        "  xp run experiments/<topic>/01_<name>.xp.toml --dry-run\n"
        "  xp run experiments/<topic>/01_<name>.xp.toml\n"
        "  xp ls"
    )


@click.command("new")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option(
    "--from",
    "source",
    type=click.Path(path_type=Path),
    help="Copy this experiment file, with a fresh ID.",
)
@click.option(
    "--reid",
    "reid",
    type=click.Path(path_type=Path),
    help="Give this (copied) experiment file a fresh ID, in place.",
)
@click.option("--yes", is_flag=True, help="With --reid: do not ask, even if it has runs.")
def new_cmd(path: Path | None, source: Path | None, reid: Path | None, yes: bool) -> None:
    """Write PATH.xp.toml: a fresh experiment ID, a command template and a grid.

    Example: xp new experiments/cifar/01_baseline
    """
    settings = load_settings()
    if reid is not None:
        made = runs_made_from(settings, reid)
        if made and not yes:
            click.echo(
                f"{reid} made {made} run(s) under its current ID: a new ID cuts it off from "
                "them (its report would list none). --reid is for the copy, not the original.",
                err=True,
            )
            if not click.confirm("Give it a new ID anyway?"):
                click.echo("nothing changed")
                return
        expid = reid_experiment(settings, reid)
        click.echo(f"{reid}: new experiment ID {expid}")
        return
    if path is None:
        raise click.UsageError("give PATH, e.g. `xp new experiments/cifar/01_baseline`")
    target = new_experiment(settings, path, source=source)
    click.echo(f"wrote {target}")
    click.echo(f"Edit its command and [grid], then: xp run {target} --dry-run")
