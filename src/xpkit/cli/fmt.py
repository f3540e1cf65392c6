"""Small formatting helpers shared by the commands."""

from __future__ import annotations

import time
from typing import Any

STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "finished": "green",
    "failed": "red",
    "killed": "magenta",
    "lost": "bold red",
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
    return duration(time.time() - timestamp).split(".")[0].rstrip("s") + (
        "s ago" if time.time() - timestamp < 60 else " ago"
    )


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def status(text: str) -> str:
    style = STATUS_STYLE.get(text)
    return f"[{style}]{text}[/]" if style else text
