"""Logged values as metrics.jsonl lines and as JSON: what `run.log`, the summary and
checkpoint records accept, and the errors for what they do not.

`run.log` does not format a line per call: it appends the step, the time text and the
values to its set of metrics' Stream (one flat list), and the flush formats every pending
row of a stream with one %-format of the stream's template repeated, in C, as bytes (bytes
%-formatting is ~15% faster than str's and needs no encoding). Values are written with 17
significant digits (%.17g), which read back as the very same float and cost half of
Python's shortest repr for real-valued metrics: 0.1 reads 0.10000000000000001 in the file
and 2.0 reads 2; every reader parses them back to 0.1 and 2. Within one
flush, the lines of different sets of metrics are written in step order (a stable merge;
each set's own lines in the order logged), so the file's last line stays the highest step
a resumed run continues after."""

from __future__ import annotations

import heapq
import json
import time
from operator import itemgetter

from xpkit.errors import RunError
from xpkit.store import rundir as rd

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module
if TYPE_CHECKING:
    from typing import Any


def line_template(keys: tuple[str, ...]) -> bytes:
    """A %-format template of one metrics line for this set of keys."""
    for key in keys:
        if not isinstance(key, str):
            raise RunError(f"run.log: metric names must be strings, got {key!r}")
        if key in ("step", "time"):
            raise RunError(f"run.log: {key!r} is reserved; pass step= or use another name")
    fields = "".join(", " + json.dumps(k).replace("%", "%%") + ": %.17g" for k in keys)
    # json.dumps escapes every non-ASCII character: the template is ASCII.
    return ('{"step": %d, "time": %s' + fields + "}\n").encode()  # time: preformatted


_NOT_ONE = object()  # Stream.only of a stream of several metrics


class SlowLine(bytes):
    """A line formatted by `slow_row`, in a stream's rows where a time text would be."""


class Stream:
    """The rows logged for one set of metric names and not yet written: step, time text
    and the values, flat. `log` extends `rows` by a whole row in one call, which the GIL
    makes atomic, so the flush takes a prefix of whole rows without a lock."""

    __slots__ = ("keys", "line_bytes", "only", "rows", "template", "width")
    only: Any

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        # run.log's one-metric path compares the name to this (no name equals the stand-in)
        self.only = keys[0] if len(keys) == 1 else _NOT_ONE
        self.template = line_template(keys)
        self.width = len(keys) + 2
        self.rows: list[Any] = []
        # A line's length with long values: how many rows make FLUSH_BYTES.
        self.line_bytes = len(self.template) + 24 * len(keys)

    def take(self) -> list[Any]:
        """The pending rows, removed (rows logged meanwhile stay for the next take)."""
        rows = self.rows
        count = len(rows)
        taken = rows[:count]
        del rows[:count]
        return taken

    def format(self, rows: list[Any]) -> bytes:
        width = self.width
        if SlowLine not in set(map(type, rows[1::width])):
            return (self.template * (len(rows) // width)) % tuple(rows)
        template = self.template
        return b"".join([
            rows[at + 1] if type(rows[at + 1]) is SlowLine
            else template % tuple(rows[at : at + width])
            for at in range(0, len(rows), width)
        ])  # fmt: skip


def slow_row(keys: tuple[str, ...], values: tuple[Any, ...], step: int) -> tuple[Any, ...]:
    """A stream row for values that need conversion: bools, strings, non-finite floats,
    numpy/torch scalars, its line formatted now. Raises for values that are not scalars."""
    converted = [scalar(key, value) for key, value in zip(keys, values)]
    fields = "".join(f", {json.dumps(key)}: {json.dumps(value)}"
                     for key, value in zip(keys, converted))  # fmt: skip
    line = f'{{"step": {step}, "time": {time.time():.3f}{fields}}}\n'
    return (step, SlowLine(line.encode()), *converted)


def take_lines(streams: list[Stream]) -> tuple[bytes, list[tuple[Stream, list[Any]]]]:
    """The pending lines of these streams as one text, and the rows taken per stream."""
    taken = [(stream, rows) for stream in streams if (rows := stream.take())]
    texts = [stream.format(rows) for stream, rows in taken]
    if len(texts) <= 1:
        return b"".join(texts), taken
    by_step = [zip(rows[:: stream.width], text.splitlines(keepends=True))
               for (stream, rows), text in zip(taken, texts)]  # fmt: skip
    return b"".join([line for _, line in heapq.merge(*by_step, key=itemgetter(0))]), taken


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
