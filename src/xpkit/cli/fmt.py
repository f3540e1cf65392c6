"""Small formatting helpers shared by the commands."""

from __future__ import annotations

import time

from xpkit.values import format_duration as duration

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

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


_ANSI = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36}


def styled(text: str, color: str | None = None, bold: bool = False) -> str:
    """`text` in ANSI color and/or bold, as click.style writes it (click.echo strips it
    where the stream is not a terminal); without importing click: `xp run`'s path."""
    codes = ([f"\x1b[{_ANSI[color]}m"] if color else []) + (["\x1b[1m"] if bold else [])
    return "".join(codes) + text + "\x1b[0m" if codes else text


def unstyled(text: str) -> str:
    """`text` without its ANSI styles."""
    import re

    return re.sub("\x1b\\[[0-9;]*m", "", text)


def styled_status(text: str) -> str:
    """Status with ANSI color (no rich import on the `xp run` path)."""
    return styled(text, STATUS_COLOR.get(text), bold=text == "lost")
