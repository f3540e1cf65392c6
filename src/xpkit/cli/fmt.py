"""Small formatting helpers shared by the commands."""

from __future__ import annotations

import time
from typing import Any

from xpkit.values import format_duration as duration

STATUS_COLOR = {
    "queued": "cyan",
    "running": "yellow",
    "finished": "green",
    "failed": "red",
    "killed": "magenta",
    "cancelled": "magenta",
    "pruned": "blue",
    "lost": "red",
}


def age(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    seconds = time.time() - timestamp
    return f"{int(max(seconds, 0))}s ago" if seconds < 60 else f"{duration(seconds)} ago"


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def status(text: str) -> str:
    """Status with rich markup (tables)."""
    color = STATUS_COLOR.get(text)
    return f"[{color}]{text}[/]" if color else text


def styled_status(text: str) -> str:
    """Status with ANSI color for click.echo (no rich import on the `xp run` path)."""
    import click

    return click.style(text, fg=STATUS_COLOR.get(text), bold=text == "lost")
