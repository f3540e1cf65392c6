"""What `xp run` and `xp submit` share: their --param/--set parsers and the submit
itself (`xp run --queue` is `xp submit`), so that neither command imports the other."""

from __future__ import annotations

from xpkit.errors import ConfigError


def parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    from xpkit.values import parse_scalar

    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {pair!r}: write KEY=VALUE, e.g. --param lr=0.1")
        params[key.strip()] = parse_scalar(raw)
    return params


def parse_sets(pairs: tuple[str, ...]) -> dict[str, object]:
    """--set PATH=VALUE, VALUE as JSON (1e-3 a float, true a bool, "18" a string);
    what is not JSON is taken as a plain string."""
    import json

    sets: dict[str, object] = {}
    for pair in pairs:
        path, sep, raw = pair.partition("=")
        if not sep or not path.strip():
            raise ConfigError(f"--set {pair!r}: write PATH=VALUE, e.g. --set optim.lr=1e-3")
        try:
            sets[path.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            sets[path.strip()] = raw
    return sets


def submit_runs(
    target: tuple[str, ...],
    *,
    priority: int,
    gpus: int | None,
    labels: tuple[str, ...],
    params: dict[str, object],
    sets: dict[str, object],
    name: str | None,
    tags: tuple[str, ...],
    no_git: bool,
    resumable: bool | None = None,
    yes: bool = False,
) -> None:
    """Shared by `xp submit` and `xp run --queue`."""
    import click

    from xpkit.queue.submit import QueueRequest, submit_target
    from xpkit.settings import load_settings

    settings = load_settings()
    created = submit_target(
        settings,
        target,
        params=params,
        sets=sets,
        name=name,
        tags=list(tags),
        no_git=no_git,
        queue=QueueRequest(priority, gpus, labels, resumable),
        yes=yes,
    )
    for run_dir in created:
        click.echo(run_dir.name)
    click.echo(f"{len(created)} run(s) queued in {settings.runs}; `xp queue` shows them", err=True)
