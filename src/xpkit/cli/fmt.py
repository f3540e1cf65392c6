"""Small formatting helpers shared by the commands."""

from __future__ import annotations

import time
from typing import Any

STATUS_COLOR = {
    "queued": "cyan",
    "running": "yellow",
    "finished": "green",
    "failed": "red",
    "killed": "magenta",
    "lost": "red",
}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


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
