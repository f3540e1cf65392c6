"""The runs root's change journal: which runs' metadata changed, so that a reader of a
runs root with 100,000 runs re-reads the few that changed instead of statting them all.

Writers: every metadata write into a run directory (RunDir.write_run/write_json, a run
published or trashed) appends the run's name to the journal of the writing host,
`<runs root>/.xp/journal/<host>.<generation>.log`, once before the change and once after
it. One `write()` of a short line to a file opened with O_APPEND: lines from processes
of one host never interleave, and hosts never share a file (appends over NFS from two
clients are not atomic).

Readers (store/index.py) keep, per journal file, its inode and the offset they have
read to, and re-read the runs named after it. A line written before a change whose
writer is then killed names a run that did not change (harmless); one whose writer is
killed right after the change still named it, and the reader re-reads a named run for
a few seconds after it first saw the line, so a change that lands just after the read is
seen too.

The journal is a cache of "what changed", never the truth: a reader that finds a
journal file truncated, replaced or gone, or that has not looked for longer than the
retention, stats every run directory as before. A failed append (a full disk, a
read-only mount) is ignored: the files still say everything.

Rotation: a file over MAX_BYTES is left for generation + 1; the host's generations older
than RETENTION_S are deleted then (the newest two always stay).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

JOURNAL = "journal"
META_DIR = ".xp"  # = names.META_DIR (not imported: every run imports this module)
MAX_BYTES = 16 << 20
RETENTION_S = 7 * 86400
KEEP_GENERATIONS = 2

# (journal folder) -> (open fd, generation) of this process's current file
_open: dict[str, tuple[int, int]] = {}
_pid = os.getpid()


def journal_dir(runs_root: Path) -> Path:
    return runs_root / META_DIR / JOURNAL


def host_tag() -> str:
    """This host's name as a file-name part."""
    name = os.uname().nodename or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64]


def parse_file_name(name: str) -> tuple[str, int] | None:
    """(host, generation) of a journal file name, None for anything else."""
    stem, dot, ext = name.rpartition(".")
    host, dot2, generation = stem.rpartition(".")
    if ext != "log" or not dot or not dot2 or not generation.isdigit():
        return None
    return host, int(generation)


def note(run_path: Path) -> None:
    """Record that the metadata of the run at `run_path` changes (or just changed)."""
    parent = run_path.parent
    if parent.parent.name == META_DIR:
        return  # a staged, trashed or restoring run (.xp/<folder>/<run>): no one lists those
    folder = str(journal_dir(parent))
    line = f"{run_path.name}\n".encode()
    try:
        _append(folder, line)
    except OSError:
        _forget(folder)  # the files stay the truth; a reader that misses it rescans


def _append(folder: str, line: bytes) -> None:
    global _pid
    if _pid != os.getpid():  # a forked child: its parent's descriptors are not its own
        _open.clear()
        _pid = os.getpid()
    current = _open.get(folder)
    if current is None:
        current = _open[folder] = _open_newest(folder)
    fd, generation = current
    os.write(fd, line)
    if os.fstat(fd).st_nlink == 0:  # the file was deleted under us: write where readers look
        _forget(folder)
        _append(folder, line)
    elif os.lseek(fd, 0, os.SEEK_CUR) > MAX_BYTES:
        _roll_over(folder, generation)


def _open_newest(folder: str) -> tuple[int, int]:
    host = host_tag()
    try:
        generations = _generations(folder, host)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        generations = []
    generation = max(generations, default=0)
    path = os.path.join(folder, f"{host}.{generation}.log")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    return fd, generation


def _generations(folder: str, host: str) -> list[int]:
    found = []
    for name in os.listdir(folder):
        parsed = parse_file_name(name)
        if parsed is not None and parsed[0] == host:
            found.append(parsed[1])
    return found


def _roll_over(folder: str, generation: int) -> None:
    """Start the next generation (another process may have already) and delete this
    host's generations past the retention."""
    host = host_tag()
    next_path = os.path.join(folder, f"{host}.{generation + 1}.log")
    try:
        os.close(os.open(next_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        pass
    _forget(folder)
    generations = sorted(_generations(folder, host))
    too_old = time.time() - RETENTION_S
    for old in generations[:-KEEP_GENERATIONS]:
        path = os.path.join(folder, f"{host}.{old}.log")
        try:
            if os.stat(path).st_mtime < too_old:
                os.unlink(path)
        except OSError:
            pass


def _forget(folder: str) -> None:
    current = _open.pop(folder, None)
    if current is not None:
        try:
            os.close(current[0])
        except OSError:
            pass
