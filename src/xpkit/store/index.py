"""SQLite cache of run metadata, for fast listing and filtering.

Lives on local disk under XP_CACHE_DIR (never inside a runs root, which may be a
network mount). Refreshed incrementally from the runs root's change journal
(store/journal.py): only the runs it names, new or gone folders and running runs are
looked at; every folder is statted on first use or when the journal cannot be trusted
(DESIGN.md, "Listing at scale"). Deleting the index loses nothing; it is rebuilt from the
run directories. The rows themselves: store/rows.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.settings import XP_CACHE_DIR
from xpkit.store import journal
from xpkit.store import rundir as rd
from xpkit.store.rows import COLUMNS, ROW_FIELDS, RunRow, read_rows
from xpkit.values import path_digest

SCHEMA_VERSION = 6
# A directory modified this recently may still change within the same mtime tick.
UNSETTLED_SECONDS = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY,
    experiment_id TEXT, trial INTEGER, status TEXT, experiment TEXT,
    created REAL, started REAL, ended REAL, duration REAL, host TEXT,
    exit_code INTEGER, params TEXT, summary TEXT, summary_keys TEXT, tags TEXT, command TEXT,
    snapshot TEXT, git_commit TEXT, gpus TEXT, config TEXT, dir_mtime INTEGER, error TEXT
);
CREATE INDEX IF NOT EXISTS runs_exp ON runs (experiment_id);
CREATE INDEX IF NOT EXISTS runs_newest ON runs (created, name);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_unreadable ON runs (name) WHERE error IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def index_path(runs_root: Path) -> Path:
    digest = path_digest(runs_root)
    return XP_CACHE_DIR.get() / "index" / f"{digest}.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")  # reads the header: fails on a non-database
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def open_cache(path: Path, warnings: list[str] | None = None) -> sqlite3.Connection:
    """Connect to the index database; one that is not a database any more is deleted and
    started afresh (it is a cache: the run directories hold the truth)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _connect(path)
    except sqlite3.OperationalError:  # locked, I/O, permissions: not ours to delete
        raise
    except sqlite3.DatabaseError as e:
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        if warnings is not None:
            warnings.append(f"the run index {path} was corrupt ({e}); rebuilt it")
        return _connect(path)


class RunIndex:
    """The index of one runs root."""

    def __init__(self, runs_root: Path, path: Path | None = None) -> None:
        self.runs_root = runs_root
        self.path = path or index_path(runs_root)
        self.warnings: list[str] = []
        self.db = open_cache(self.path, self.warnings)
        self._migrate()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        """A cache: on any schema change, start over."""
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            with self.db:
                self.db.execute("DROP TABLE IF EXISTS runs")
                self.db.execute("DELETE FROM meta WHERE key='journal'")
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
        self.db.executescript(_SCHEMA)

    def refresh(self, rescan: bool = False) -> None:
        """Bring the index up to date with the run directories: re-read the runs the
        journal names, the runs root's new and gone entries (only when its mtime moved),
        running runs whose directory changed, and runs changed in the last seconds.
        Stat every run directory instead on first use, when the journal cannot be
        trusted, after a long pause, or when asked (`rescan`)."""
        now = time.time()
        root_mtime = _mtime(self.runs_root)  # before looking: a change after is seen next
        state = self._meta("journal")
        tail = None
        if not rescan and state and now - state.get("checked", 0) < journal.RETENTION_S:
            tail = _journal_tail(self.runs_root, state.get("files", {}))
        if tail is None:
            files, settling = self._full_scan(now)
        else:
            named, files = tail
            settling = self._incremental(now, state, named, root_mtime)
        self._set_meta("journal", {"files": files, "settling": settling,
                                   "root_mtime": root_mtime, "checked": now})  # fmt: skip
        for name, error in self.db.execute("SELECT name, error FROM runs WHERE error IS NOT NULL"):
            self.warnings.append(f"skipped run {name}: {error}")

    def _full_scan(self, now: float) -> tuple[dict[str, list[int]], dict[str, float]]:
        """Stat every run directory; re-read those whose mtime changed. Returns the
        journal offsets to read on from, and the runs to re-read for a while."""
        files = _journal_sizes(self.runs_root)  # before the scan: what follows is re-read
        known = dict(self.db.execute("SELECT name, dir_mtime FROM runs").fetchall())
        seen = set()
        changed: list[tuple[str, int | None]] = []
        settled_before = (now - UNSETTLED_SECONDS) * 1e9
        for entry in _run_entries(self.runs_root):
            try:
                mtime = entry.stat().st_mtime_ns
            except OSError:
                continue
            if not entry.is_dir():
                continue
            seen.add(entry.name)
            if known.get(entry.name) != mtime or mtime > settled_before:
                changed.append((entry.name, mtime))
        gone = [name for name in known if name not in seen]
        return files, self._store(changed, gone, now, {})

    def _incremental(
        self, now: float, state: dict[str, Any], named: set[str], root_mtime: int | None
    ) -> dict[str, float]:
        """Re-read the runs the journal named, new and gone folders, running runs whose
        folder changed; returns the runs to re-read for a while."""
        settling: dict[str, float] = {n: t for n, t in state.get("settling", {}).items()
                                      if now - t < UNSETTLED_SECONDS}  # fmt: skip
        for name in named:  # first seen now: re-read again for a while (see journal.py)
            settling.setdefault(name, now)
        wanted = set(named) | set(settling)
        gone: list[str] = []
        settled_before = (now - UNSETTLED_SECONDS) * 1e9
        if root_mtime != state.get("root_mtime") or (root_mtime or 0) > settled_before:
            # Runs appeared or went (published, trashed, restored, copied in): names only.
            present = {e.name for e in _run_entries(self.runs_root)}
            known = {n for (n,) in self.db.execute("SELECT name FROM runs")}
            wanted |= present - known
            gone = sorted(known - present)
        # A live run's summary changes without a journal line, and an unreadable run may
        # be repaired by hand: stat those (as many as are running, not all runs).
        for name, mtime in self.db.execute(
            "SELECT name, dir_mtime FROM runs WHERE status='running' UNION "
            "SELECT name, dir_mtime FROM runs WHERE error IS NOT NULL"
        ):
            current = _mtime(self.runs_root / name)
            if current is None or current != mtime or current > settled_before:
                wanted.add(name)
        return self._store([(n, None) for n in sorted(wanted)], gone, now, settling)

    def _store(
        self,
        changed: list[tuple[str, int | None]],
        gone: list[str],
        now: float,
        settling: dict[str, float],
    ) -> dict[str, float]:
        """Re-read the `changed` runs (name, folder mtime if known; those whose folder is
        gone are deleted) and delete `gone`; returns `settling` plus the runs whose
        folder changed within the mtime tick."""
        settled_before = (now - UNSETTLED_SECONDS) * 1e9
        found = []
        gone = list(gone)
        for name, mtime in changed:
            if not names.RUN_NAME_PATTERN.match(name):
                continue
            if mtime is None:
                mtime = _mtime(self.runs_root / name, directory=True)
                if mtime is None:
                    gone.append(name)
                    continue
            if mtime > settled_before:
                settling.setdefault(name, now)
            found.append((name, mtime))
        rows = read_rows(self.runs_root, found)
        with self.db:
            if gone:
                self.db.executemany("DELETE FROM runs WHERE name=?", [(n,) for n in gone])
            if rows:
                placeholders = ",".join("?" * len(COLUMNS))
                self.db.executemany(f"INSERT OR REPLACE INTO runs VALUES ({placeholders})", rows)
        return settling

    def _meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        try:
            return json.loads(row[0]) if row else None
        except ValueError:
            return None

    def _set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def experiments(self) -> list[tuple[str, str, int]]:
        """(experiment ID, name, number of runs) of every experiment with runs."""
        sql = ("SELECT experiment_id, max(experiment), count(*) FROM runs WHERE error IS NULL "
               "GROUP BY experiment_id ORDER BY max(created) DESC")  # fmt: skip
        return [(e, n or "", c) for e, n, c in self.db.execute(sql)]

    def rows(
        self,
        experiment_id: str | None = None,
        statuses: tuple[str, ...] = (),
        limit: int = 0,
        offset: int = 0,
    ) -> list[RunRow]:
        """Indexed runs (optionally of one experiment, with given statuses), newest first;
        at most `limit` of them (when above 0) after the first `offset`."""
        where, args = self._where(experiment_id, statuses)
        sql = (f"SELECT {', '.join(ROW_FIELDS)} FROM runs WHERE {where} "
               "ORDER BY created DESC, name DESC")  # fmt: skip
        exact = not {"running", "lost"} & set(statuses)  # else decided per row, below
        if limit > 0 and exact:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
            offset = 0
        result = []
        for values in self.db.execute(sql, args):
            row = RunRow(values)
            if row.status == "running":
                # Heartbeats and holders change no directory: decided live (rundir.status_of).
                run_dir = rd.RunDir(self.runs_root / row.name)
                row.status = rd.status_of(run_dir, {"status": "running", "started": row.started})
            if not statuses or row.status in statuses:
                if offset:
                    offset -= 1
                    continue
                result.append(row)
                if len(result) == limit:
                    break
        return result

    def count(self, experiment_id: str | None = None, statuses: tuple[str, ...] = ()) -> int:
        """How many runs `rows` would return without a limit."""
        if {"running", "lost"} & set(statuses):
            return len(self.rows(experiment_id, statuses))
        where, args = self._where(experiment_id, statuses)
        return int(self.db.execute(f"SELECT count(*) FROM runs WHERE {where}", args).fetchone()[0])

    @staticmethod
    def _where(experiment_id: str | None, statuses: tuple[str, ...]) -> tuple[str, list[Any]]:
        where = "error IS NULL"
        args: list[Any] = []
        if experiment_id:
            where += " AND experiment_id = ?"
            args.append(experiment_id)
        if statuses:
            # A run whose heartbeat went stale is stored as "running" (select those and
            # decide per row); one a scheduler found dead is stored as "lost".
            stored = set(statuses) | ({"running"} if "lost" in statuses else set())
            where += f" AND status IN ({','.join('?' * len(stored))})"
            args.extend(sorted(stored))
        return where, args


def _run_entries(runs_root: Path) -> list[os.DirEntry[str]]:
    try:
        entries = list(os.scandir(runs_root))
    except FileNotFoundError:
        return []
    pattern = names.RUN_NAME_PATTERN
    return [e for e in entries if not e.name.startswith(".") and pattern.match(e.name)]


def _mtime(path: Path, directory: bool = False) -> int | None:
    """The mtime of `path` (ns), None when it is gone (or, with `directory`, not a folder)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if directory and not stat.S_ISDIR(st.st_mode):
        return None
    return st.st_mtime_ns


def _journal_sizes(runs_root: Path) -> dict[str, list[int]]:
    """[inode, size] of each journal file: where a reader that has read everything
    up to now starts."""
    sizes = {}
    try:
        entries = list(os.scandir(journal.journal_dir(runs_root)))
    except OSError:
        return {}
    for entry in entries:
        if journal.parse_file_name(entry.name) is not None:
            try:
                st = entry.stat()
            except OSError:
                continue
            sizes[entry.name] = [st.st_ino, st.st_size]
    return sizes


def _journal_tail(
    runs_root: Path, known: dict[str, list[int]]
) -> tuple[set[str], dict[str, list[int]]] | None:
    """The runs named in the journal since the offsets in `known`, and the new offsets;
    None when the journal cannot be trusted (a file truncated or replaced, or every file
    of a host gone): then every run directory is statted."""
    folder = journal.journal_dir(runs_root)
    named: set[str] = set()
    files: dict[str, list[int]] = {}
    for name, (inode, size) in _journal_sizes(runs_root).items():
        offset = 0
        if name in known:
            known_inode, offset = known[name]
            if known_inode != inode or size < offset:
                return None
        if size > offset:
            try:
                data, offset = rd.new_lines(folder / name, offset)
            except OSError:
                return None
            named.update(data.decode("utf-8", "replace").split())
        files[name] = [inode, offset]
    hosts = {journal.parse_file_name(n)[0] for n in files}  # type: ignore[index]
    if any(journal.parse_file_name(n)[0] not in hosts for n in known):  # type: ignore[index]
        return None
    return named, files


def load_rows(
    runs_root: Path,
    experiment_id: str | None = None,
    statuses: tuple[str, ...] = (),
    rescan: bool = False,
) -> tuple[list[RunRow], list[str]]:
    """Refresh the index and return its rows plus warnings about skipped runs."""
    rows, _, warnings = load_page(runs_root, experiment_id, statuses, 0, rescan)
    return rows, warnings


def load_page(
    runs_root: Path,
    experiment_id: str | None = None,
    statuses: tuple[str, ...] = (),
    limit: int = 0,
    rescan: bool = False,
) -> tuple[list[RunRow], int, list[str]]:
    """Refresh the index; the newest `limit` rows (all for 0), how many there are in
    all, and warnings about skipped runs."""
    from xpkit.store import pending

    pending.apply(runs_root)  # ends of runs that found a full disk (not by read-only views)
    index = RunIndex(runs_root)
    try:
        index.refresh(rescan)
        rows = index.rows(experiment_id, statuses, limit)
        total = index.count(experiment_id, statuses) if 0 < limit <= len(rows) else len(rows)
        return rows, total, index.warnings
    finally:
        index.close()
