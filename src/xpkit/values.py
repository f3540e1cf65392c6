"""Small rules about values that several layers apply the same way."""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any


def _builtin_hash(name: str, modules: tuple[str, ...]) -> Any:
    """CPython's own sha1/sha256 (the same digests): `import hashlib` loads OpenSSL
    first, ~3 ms of every `xp run` and `xp.init()`; hashlib where they are missing."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    import hashlib

    return getattr(hashlib, name)


sha1 = _builtin_hash("sha1", ("_sha1",))
sha256 = _builtin_hash("sha256", ("_sha256", "_sha2"))  # _sha2 from Python 3.12
_LOWER_IS_BETTER = re.compile(r"loss|err|error|perplexity|ppl|mse|mae|rmse|nll|time|dist", re.I)


def is_number(value: Any) -> bool:
    """A real number (bools are not), inf and nan included."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def lower_is_better(metric: str) -> bool:
    """Loss-like names are minimized, everything else maximized."""
    return bool(_LOWER_IS_BETTER.search(metric))


def path_digest(path: Path, length: int = 16) -> str:
    """A short stable name for a folder (the runs root, a project) in local caches."""
    return str(sha1(str(path.resolve()).encode()).hexdigest()[:length])


def is_remote(destination: str) -> bool:
    """`host:path` (rsync/ssh) rather than a local path."""
    return ":" in destination.split("/", 1)[0]


def parse_scalar(text: str) -> str | int | float | bool:
    """A `--param k=v` value: bool, int, float, or else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def format_duration(seconds: float | None) -> str:
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
