"""Logged values as metrics.jsonl lines and as JSON: what `run.log`, the summary and
checkpoint records accept, and the errors for what they do not."""

from __future__ import annotations

import json
import time

from xpkit.errors import RunError
from xpkit.store import rundir as rd

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module
if TYPE_CHECKING:
    from typing import Any


def line_template(keys: tuple[str, ...]) -> str:
    """A %-format template of one metrics line for this set of keys."""
    for key in keys:
        if not isinstance(key, str):
            raise RunError(f"run.log: metric names must be strings, got {key!r}")
        if key in ("step", "time"):
            raise RunError(f"run.log: {key!r} is reserved; pass step= or use another name")
    fields = "".join(", " + json.dumps(k).replace("%", "%%") + ": %r" for k in keys)
    return '{"step": %d, "time": %s' + fields + "}\n"  # time: preformatted, to the ms


def slow_line(keys: tuple[str, ...], values: tuple[Any, ...], step: int) -> str:
    """A metrics line for values that need conversion: bools, strings, non-finite floats,
    numpy/torch scalars. Raises for values that are not scalars."""
    fields = "".join(
        f", {json.dumps(key)}: {json.dumps(scalar(key, value))}" for key, value in zip(keys, values)
    )
    return f'{{"step": {step}, "time": {time.time():.3f}{fields}}}\n'


def scalar(key: str, value: object) -> float | int | bool | str:
    """Accept plain numbers and strings; convert numpy/torch scalars; reject the rest."""
    if isinstance(value, int) and not -rd.FLOAT_INT <= value <= rd.FLOAT_INT:
        raise RunError(f"run.log: metric {key!r} is an int no float can hold; log a float")
    if isinstance(value, (int, float, str)):  # bool is an int
        return value
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RunError(
            f"run.log: metric {key!r} has a {type(value).__name__} value; log numbers "
            "(int, float, bool, numpy or torch scalars) or strings"
        ) from None


def json_safe(summary: dict[str, Any]) -> dict[str, Any]:
    """Summary values as JSON can hold them (numpy/torch scalars become floats)."""
    return {
        key: value if isinstance(value, (int, float, str, type(None))) else scalar(key, value)
        for key, value in summary.items()
    }


def checkpoint_value(value: Any) -> Any:
    """A checkpoint's extra info as JSON holds it (a monitored torch scalar, a nan)."""
    if isinstance(value, (str, int, type(None))):  # bool is an int
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if number - number == 0.0 else str(number)
