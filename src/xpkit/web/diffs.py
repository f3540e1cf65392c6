"""A run's git.diff for the run page, per file: a small diff is shown whole, a large
one (a sweep's outputs inlined, a vendored library) as a folded list of its files,
each loaded when opened, so the page stays light whatever the diff weighs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHOWN_WHOLE = 256 * 1024  # bytes of git.diff rendered into the page at once
PART_CUT = 512 * 1024  # bytes of one file's diff shown; the rest is in git.diff itself
HEADER = b"diff --git "


@dataclass(frozen=True)
class DiffPart:
    index: int
    path: str  # the file it changes; "" for the preamble (files not inlined)
    start: int
    size: int


def diff_parts(diff: Path) -> list[DiffPart]:
    """The sections of a git.diff, one per changed file, found without reading it
    line by line."""
    try:
        data = diff.read_bytes()
    except OSError:
        return []
    starts = [0] if data else []  # the first file, or the preamble before it
    position = data.find(b"\n" + HEADER)
    while position != -1:
        starts.append(position + 1)
        position = data.find(b"\n" + HEADER, position + 1)
    parts = []
    for index, begin in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        newline = data.find(b"\n", begin, end)
        line = data[begin : newline if newline != -1 else end]
        path = ""
        if line.startswith(HEADER):
            path = line.decode("utf-8", "replace").rsplit(" b/", 1)[-1].strip('"')
        parts.append(DiffPart(index, path, begin, end - begin))
    return parts


def part_text(diff: Path, part: DiffPart) -> tuple[str, bool]:
    """The text of one part, cut at PART_CUT; True when it was cut."""
    with open(diff, "rb") as f:
        f.seek(part.start)
        data = f.read(min(part.size, PART_CUT))
    return data.decode("utf-8", "replace"), part.size > PART_CUT


def highlight(text: str) -> str:
    from pygments import highlight as render
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    return render(text, DiffLexer(), HtmlFormatter(cssclass="code")) if text else ""
