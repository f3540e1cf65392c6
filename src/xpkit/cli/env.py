"""`xp env`: the runs' Python environments on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("env")
def env_cmd() -> None:
    """The Python environments runs execute in (`env = "requirements.txt"` in xp.toml or
    an experiment file), built by uv once per machine and kept in ~/.cache/xpkit/envs.

    Example: xp env ls
    """


@env_cmd.command("build")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def env_build_cmd(file: Path | None) -> None:
    """Build an environment now, e.g. before a deadline sweep: FILE's (an experiment
    file, a requirements file, uv.lock or pyproject.toml), or xp.toml's env. Runs of
    any commit that pins the same packages then start at once.

    Example: xp env build experiments/cifar/03_search.xp.toml
    """
    from xpkit.execute import envstore
    from xpkit.settings import load_settings

    environment = envstore.build(load_settings(), file, say=lambda text: click.echo(text))
    packages = environment.manifest.get("packages", [])
    click.echo(f"ready: {environment.key} at {environment.path} (python "
               f"{environment.manifest.get('python')}, {len(packages)} packages)")  # fmt: skip


@env_cmd.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def env_ls_cmd(as_json: bool) -> None:
    """List this machine's environments: key, what pins them, Python, packages, size,
    when last used and by which runs.

    Example: xp env ls
    """
    from xpkit.cli.fmt import age
    from xpkit.execute import envstore

    environments = envstore.list_envs()
    if as_json:
        click.echo(json.dumps([{
            "key": e.key, "path": str(e.path), "file": e.file, "python": e.manifest.get("python"),
            "packages": e.manifest.get("packages", []), "size_bytes": e.size,
            "built": e.manifest.get("built"), "last_used": e.last_used, "runs": e.runs,
        } for e in environments], indent=2))  # fmt: skip
        return
    if not environments:
        click.echo("no environments on this machine (runs with an env build theirs)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    widest_file = max(len(e.file) for e in environments)
    table.add_column("key", no_wrap=True, min_width=16)
    table.add_column("from", no_wrap=True, min_width=min(widest_file, 24))
    table.add_column("python", no_wrap=True, min_width=6)
    table.add_column("pkgs", justify="right", no_wrap=True, min_width=4)
    table.add_column("size", justify="right", no_wrap=True, min_width=9)
    table.add_column("last used", no_wrap=True, min_width=9)
    table.add_column("runs (last)", no_wrap=True, overflow="ellipsis", ratio=1)
    for e in environments:
        runs = f"{len(e.runs)} ({e.runs[-1]})" if e.runs else ""
        table.add_row(e.key, e.file, str(e.manifest.get("python") or "?"),
                      str(len(e.manifest.get("packages", []))), envstore.format_size(e.size),
                      age(e.last_used) if e.runs else "never", runs or "-")  # fmt: skip
    Console().print(table)


@env_cmd.command("gc")
@click.option("--keep", type=click.IntRange(min=0), default=5, show_default=True,
              help="Always keep this many most recently used environments.")  # fmt: skip
@click.option("--older-than", metavar="AGE", default="30d", show_default=True,
              help="Remove only environments not used for this long (30d, 12h, 0s).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
def env_gc_cmd(keep: int, older_than: str, dry_run: bool) -> None:
    """Remove environments no queued or running run needs, beyond the most recently used
    ones, not used for a while; and what stopped builds left. They are caches: a run
    that needs one again rebuilds it.

    Example: xp env gc --keep 10 --older-than 30d
    """
    from xpkit.execute import envstore
    from xpkit.settings import load_settings
    from xpkit.store.trash import parse_age

    age = parse_age(older_than)
    removed = envstore.collect(load_settings(), keep=keep, older_than=age, dry_run=dry_run,
                               say=lambda text: click.echo(text))  # fmt: skip
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {removed} environment(s)" if removed else "nothing to remove")
