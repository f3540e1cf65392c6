"""Files of run directories, read for the dashboard: only inside the runs root.

A name that is not a run, a path with `..`, an absolute path or a symlink that leads
out of the run's directory is answered as missing, never followed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.store.rundir import RunDir

LOG_TAIL_BYTES = 256 * 1024
MAX_ARTIFACTS = 2000
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_dir(runs_root: Path, name: str) -> RunDir | None:
    """The run called `name`, or None if there is no such run in this runs root."""
    if not names.RUN_NAME_PATTERN.match(name):
        return None
    path = runs_root / name
    return RunDir(path) if path.is_dir() and not path.is_symlink() else None


def inside(base: Path, relative: str) -> Path | None:
    """`base/relative` if it is a regular file that really lies under `base`."""
    if not relative or relative.startswith(("/", "\\")) or "\x00" in relative:
        return None
    if any(part in ("..", "") or part.startswith(".") for part in relative.split("/")):
        return None  # hidden files are bookkeeping (claims, .secrets.json), never served
    root = base.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def artifacts(run: RunDir) -> list[dict[str, Any]]:
    """Files under the run's artifacts folder (symlinks out of it left out)."""
    base = run.file("artifacts")
    found: list[dict[str, Any]] = []
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for filename in sorted(files):
            relative = os.path.relpath(os.path.join(folder, filename), base)
            path = inside(base, relative.replace(os.sep, "/"))
            if path is not None:
                found.append({"path": relative, "size": path.stat().st_size})
            if len(found) >= MAX_ARTIFACTS:
                return found
    return found


def read_log(path: Path, offset: int) -> tuple[str, int]:
    """Text appended to a log since `offset` (its last LOG_TAIL_BYTES when offset < 0),
    terminal colour codes removed, and the offset to ask from next time."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "", 0
    if offset < 0 or offset > size:
        offset = max(0, size - LOG_TAIL_BYTES)
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read(min(size - offset, 4 * LOG_TAIL_BYTES))
    end = _whole_characters(chunk)
    text = _ANSI.sub(b"", chunk[:end]).decode("utf-8", errors="replace")
    return text, offset + end


def _whole_characters(chunk: bytes) -> int:
    """Length of `chunk` without a multi-byte UTF-8 character cut off at its end
    (it comes whole with the next read)."""
    for back in range(1, min(4, len(chunk)) + 1):
        byte = chunk[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for the lead
            continue
        needed = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
        return len(chunk) if needed <= back else len(chunk) - back
    return len(chunk)
