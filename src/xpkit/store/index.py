"""SQLite cache of run metadata, for fast listing and filtering.

Lives on local disk under XP_CACHE_DIR (never inside a runs root, which may be a
network mount). Refreshed incrementally: a run directory is re-read only when its
mtime changed, which every atomic metadata write (a rename into it) guarantees.
Deleting the index loses nothing; it is rebuilt from the run directories.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from functools import cached_property
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import StoreError
from xpkit.settings import XP_CACHE_DIR
from xpkit.store import rundir as rd
from xpkit.values import path_digest

SCHEMA_VERSION = 5
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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

_COLUMNS = [
    "name",
    "experiment_id",
    "trial",
    "status",
    "experiment",
    "created",
    "started",
    "ended",
    "duration",
    "host",
    "exit_code",
    "params",
    "summary",
    "summary_keys",
    "tags",
    "command",
    "snapshot",
    "git_commit",
    "gpus",
    "config",
    "dir_mtime",
    "error",
]


ROW_FIELDS = _COLUMNS[:-2]  # everything but dir_mtime and error
_JSON_FIELDS = ("params", "summary", "summary_keys", "tags", "gpus", "config")
# RunRow keeps JSON columns as text under these names and decodes them on first use.
_ATTRIBUTES = tuple(f"{n}_json" if n in _JSON_FIELDS else n for n in ROW_FIELDS)


class RunRow:
    """One run as the index knows it; `status` already accounts for lost runs.

    params, summary, tags and gpus are decoded from JSON on first use: listing 10,000
    runs to show 50 of them decodes 50. Their text (`params_json`, ...) compares
    cheaply: runs with equal text have equal values.
    """

    name: str
    experiment_id: str
    trial: int
    status: str
    experiment: str
    created: float | None
    started: float | None
    ended: float | None
    duration: float | None
    host: str | None
    exit_code: int | None
    command: str
    snapshot: str | None
    git_commit: str | None
    params_json: str
    summary_json: str
    summary_keys_json: str  # the summary's keys, in order
    tags_json: str
    gpus_json: str
    config_json: str  # config.json's scalar leaves by dotted path: filterable like params

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.__dict__.update(zip(_ATTRIBUTES, values))

    @cached_property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @cached_property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.summary_json)

    @cached_property
    def tags(self) -> list[str]:
        return json.loads(self.tags_json)

    @cached_property
    def gpus(self) -> list[int]:
        """The GPU indices the run was given on its host."""
        return json.loads(self.gpus_json)

    @cached_property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ROW_FIELDS if name != "summary_keys"}


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
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
        self.db.executescript(_SCHEMA)

    def refresh(self) -> None:
        """Bring the index up to date with the run directories."""
        known = dict(self.db.execute("SELECT name, dir_mtime FROM runs").fetchall())
        seen = set()
        changed = []
        settled_before = (time.time() - UNSETTLED_SECONDS) * 1e9
        try:
            entries = list(os.scandir(self.runs_root))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith(".") or not names.RUN_NAME_PATTERN.match(entry.name):
                continue
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
        with self.db:
            if gone:
                self.db.executemany("DELETE FROM runs WHERE name=?", [(n,) for n in gone])
            if changed:
                rows = [self._read(name, mtime) for name, mtime in changed]
                placeholders = ",".join("?" * len(_COLUMNS))
                self.db.executemany(f"INSERT OR REPLACE INTO runs VALUES ({placeholders})", rows)
        for name, error in self.db.execute("SELECT name, error FROM runs WHERE error IS NOT NULL"):
            self.warnings.append(f"skipped run {name}: {error}")

    def _read(self, name: str, mtime: int) -> tuple[Any, ...]:
        run_dir = rd.RunDir(self.runs_root / name)
        parsed = names.parse_run_name(name)
        try:
            run = run_dir.read_run()
            summary = _summary(run_dir)
        except Exception as e:  # corrupt, hostile or half-written: remember why, never crash
            return (name, parsed.expid if parsed else "", parsed.trial if parsed else 0,
                    "corrupt", "", None, None, None, None, None, None, "{}", "{}", "[]", "[]", "",
                    None, None, "[]", "{}", mtime, str(e).removeprefix(f"{name}: "))  # fmt: skip
        experiment = run.get("experiment") or {}
        return (
            name,
            run.get("experiment_id", ""),
            run.get("trial", 0),
            run.get("status", "unknown"),
            experiment.get("name", "") if isinstance(experiment, dict) else str(experiment),
            run.get("created"),
            run.get("started"),
            run.get("ended"),
            run.get("duration"),
            run.get("host"),
            run.get("exit_code"),
            json.dumps(run.get("params") or {}),
            json.dumps(summary),
            json.dumps(list(summary)),
            json.dumps(run.get("tags") or []),
            run.get("command", ""),
            run.get("snapshot"),
            run.get("commit"),
            json.dumps(run.get("gpus") or []),
            json.dumps(_config_leaves(run_dir)),
            mtime,
            None,
        )

    def experiments(self) -> list[tuple[str, str, int]]:
        """(experiment ID, name, number of runs) of every experiment with runs."""
        sql = ("SELECT experiment_id, max(experiment), count(*) FROM runs WHERE error IS NULL "
               "GROUP BY experiment_id ORDER BY max(created) DESC")  # fmt: skip
        return [(e, n or "", c) for e, n, c in self.db.execute(sql)]

    def rows(
        self, experiment_id: str | None = None, statuses: tuple[str, ...] = ()
    ) -> list[RunRow]:
        """Indexed runs (optionally of one experiment, with given statuses), newest first."""
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM runs WHERE error IS NULL"
        args: list[Any] = []
        if experiment_id:
            sql += " AND experiment_id = ?"
            args.append(experiment_id)
        if statuses:
            # A run whose heartbeat went stale is stored as "running" (select those and
            # decide below); one a scheduler found dead is stored as "lost".
            stored = set(statuses) | ({"running"} if "lost" in statuses else set())
            sql += f" AND status IN ({','.join('?' * len(stored))})"
            args.extend(sorted(stored))
        sql += " ORDER BY created DESC, name DESC"
        result = []
        for values in self.db.execute(sql, args):
            row = RunRow(values)
            if row.status == "running":
                # Heartbeats touch a file without changing the directory: read them live.
                run_dir = rd.RunDir(self.runs_root / row.name)
                row.status = rd.effective_status("running", run_dir.heartbeat_age(), row.started)
            if not statuses or row.status in statuses:
                result.append(row)
        return result


CONFIG_MAX_BYTES = 1 << 20  # a larger config.json is not indexed (it is still the run's)
CONFIG_MAX_LEAVES = 2000


def _config_leaves(run_dir: rd.RunDir) -> dict[str, Any]:
    """The scalar values of config.json by dotted path (`model.depth`), so that a value
    a program passed to `xp.init(config=...)` is found like a param. An unreadable or
    huge config is left out: the index is a cache, never the reason a run is skipped."""
    file = run_dir.file(rd.CONFIG_JSON)
    try:
        if file.stat().st_size > CONFIG_MAX_BYTES:
            return {}
        config = rd.read_json(file)
    except (OSError, ValueError):
        return {}
    leaves: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [("", config)]
    while stack and len(leaves) < CONFIG_MAX_LEAVES:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):  # popped in the file's order
                stack.append((f"{path}.{key}" if path else str(key), item))
        elif path and (value is None or isinstance(value, (str, int, float, bool))):
            leaves[path] = value
    return leaves


def _summary(run_dir: rd.RunDir) -> dict[str, Any]:
    try:
        summary = rd.read_json(run_dir.file(rd.SUMMARY_JSON))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise StoreError(str(e) if "summary.json" in str(e) else f"summary.json: {e}") from None
    problem = rd.check_summary(summary)
    if problem is not None:
        raise StoreError(problem)
    return dict(summary)


def load_rows(
    runs_root: Path, experiment_id: str | None = None, statuses: tuple[str, ...] = ()
) -> tuple[list[RunRow], list[str]]:
    """Refresh the index and return its rows plus warnings about skipped runs."""
    from xpkit.store import pending

    pending.apply(runs_root)  # ends of runs that found a full disk (not by read-only views)
    index = RunIndex(runs_root)
    try:
        index.refresh()
        return index.rows(experiment_id, statuses), index.warnings
    finally:
        index.close()
