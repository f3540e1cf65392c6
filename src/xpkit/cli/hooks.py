"""`xp hooks check|ls|flush|retry|test`."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

from xpkit.errors import HookError

if TYPE_CHECKING:
    from xpkit.hooks.base import HookSpec
    from xpkit.settings import Settings


@click.group("hooks")
def hooks_cmd() -> None:
    """Notification hooks ([hooks.<name>] in xp.toml) and their outbox.

    Example: xp hooks check
    """


def _specs() -> tuple[Settings, list[HookSpec]]:
    from xpkit.hooks.base import parse_hooks
    from xpkit.settings import load_settings

    settings = load_settings()
    return settings, parse_hooks(settings.hooks, str(settings.source or "xp.toml"))


@hooks_cmd.command("check")
def check_cmd() -> None:
    """Validate the hooks and say what is missing (tokens, URLs). Exit 2 on a problem.

    Example: xp hooks check
    """
    from xpkit.hooks.base import hook_problems

    _, specs = _specs()
    if not specs:
        click.echo("no hooks configured ([hooks.<name>] in xp.toml)")
        return
    problems = 0
    for spec in specs:
        issues = hook_problems(spec)
        for issue in issues:
            click.echo(f"xp: error: {issue}", err=True)
        problems += len(issues)
        state = "ok" if not issues else "NOT ready"
        click.echo(f"{spec.name} ({spec.type}): {state}; events: {', '.join(spec.events)}")
    if problems:
        sys.exit(2)


@hooks_cmd.command("ls")
def ls_cmd() -> None:
    """Show events waiting in the outbox and dead letters.

    Example: xp hooks ls
    """
    from xpkit.hooks.outbox import ERRORS, Deliverer, dead_letters, outbox_dir

    settings, specs = _specs()
    if not specs:
        click.echo("no hooks configured ([hooks.<name>] in xp.toml; see the README)")
    deliverer = Deliverer(settings.runs, specs)
    for spec in specs:
        pending = deliverer.pending(spec.name)
        click.echo(f"{spec.name}: {len(pending)} pending")
        for path in pending:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("error"):
                wait = max(0.0, record.get("next_at", 0) - time.time())
                click.echo(f"  {record['event']['type']}: {record['error']} "
                           f"(attempt {record['attempts']}, next in {wait:.0f} s)")  # fmt: skip
    for name, path, record in dead_letters(settings.runs):
        click.echo(f"dead {name} {record['event']['type']} {path.name}: {record.get('error')}")
    try:
        errors = (outbox_dir(settings.runs) / ERRORS).read_text().splitlines()[-5:]
    except OSError:
        errors = []
    for line in errors:
        click.echo(f"deliverer error: {line}")


@hooks_cmd.command("flush")
def flush_cmd() -> None:
    """Deliver what is due now, in the foreground.

    Example: xp hooks flush
    """
    from xpkit.hooks.outbox import Deliverer

    settings, specs = _specs()
    deliverer = Deliverer(settings.runs, specs)
    sent = deliverer.deliver_due()
    for line in deliverer.log:
        click.echo(line)
    click.echo(f"{sent} event(s) delivered")


@hooks_cmd.command("retry")
def retry_cmd() -> None:
    """Put dead letters back in the outbox, with a fresh retry window.

    Example: xp hooks retry
    """
    from xpkit.hooks.outbox import retry_dead

    settings, _ = _specs()
    click.echo(f"{retry_dead(settings.runs)} event(s) back in the outbox")


@hooks_cmd.command("test")
@click.argument("name")
def test_cmd(name: str) -> None:
    """Send a sample event to hook NAME and print the response.

    Example: xp hooks test todo
    """
    from xpkit.hooks.base import Event, make_hook

    _, specs = _specs()
    spec = next((s for s in specs if s.name == name), None)
    if spec is None:
        raise HookError(
            f"no hook named {name!r}; hooks: {', '.join(s.name for s in specs) or 'none'}"
        )
    event = Event(
        spec.events[0], "test", {"id": "test00", "name": "xp hooks test"}, ["test00_001_x"]
    )
    click.echo(f"{name}: {make_hook(spec).deliver(event=event, state={}, key=f'test-{event.id}')}")
