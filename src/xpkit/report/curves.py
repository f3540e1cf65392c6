"""Metric curves of runs, read through a per-run cache.

metrics.jsonl is append-only, so the cache (tables beside the run index, on local
disk) remembers how many bytes of each run's file it has parsed and parses only what
was appended since. Curves are stored as packed arrays: loading 1,000 runs × 1,000
points is a memcpy per curve, not a million json.loads.
"""

from __future__ import annotations

import json
import os
import warnings
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xpkit.forked import map_jobs
from xpkit.store import rundir as rd
from xpkit.store.index import index_path, open_cache

Curve = tuple[array, array]  # steps ('q'), values ('d')

_SCHEMA = """
CREATE TABLE IF NOT EXISTS curve_files (name TEXT PRIMARY KEY, inode INTEGER, offset INTEGER);
CREATE TABLE IF NOT EXISTS curves (
    name TEXT, metric TEXT, steps BLOB, vals BLOB, PRIMARY KEY (name, metric)
);
"""


class CurveCache:
    def __init__(self, runs_root: Path) -> None:
        self.runs_root = runs_root
        self.db = open_cache(index_path(runs_root))
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def curves(
        self, names: Iterable[str], metric: str | None = None
    ) -> dict[str, dict[str, Curve]]:
        """Every numeric metric's curve, per run; with `metric`, at least that one (only
        its arrays are read when the run's file has not grown)."""
        result: dict[str, dict[str, Curve]] = {}
        order = list(names)
        stale = []  # (name, path, inode, offset, size): files with lines not parsed yet
        for name in order:
            path = str(self.runs_root / name / rd.METRICS)
            try:
                stat = os.stat(path)
            except OSError:
                result[name] = {}
                continue
            row = self.db.execute(
                "SELECT inode, offset FROM curve_files WHERE name=?", (name,)
            ).fetchone()
            if row and row[0] == stat.st_ino and row[1] == stat.st_size:
                result[name] = self._load(name, metric)
                continue
            offset = row[1] if row and row[0] == stat.st_ino and row[1] < stat.st_size else 0
            stale.append((name, path, stat.st_ino, offset, stat.st_size))
        with self.db:
            for (name, _, inode, offset, _), parsed in zip(stale, _parse_files(stale)):
                result[name] = self._store(name, inode, offset, parsed)
        return {name: result[name] for name in order}

    def _store(self, name: str, inode: int, offset: int, parsed: _Parsed) -> dict[str, Curve]:
        """Merge a file's newly parsed lines into its cached curves and save them."""
        used, new, skipped = parsed
        if offset:
            cached = self._load(name)
        else:  # new, replaced or truncated file: parsed whole
            cached = {}
            self.db.execute("DELETE FROM curves WHERE name=?", (name,))
        if skipped:
            warnings.warn(
                f"{name}: metrics.jsonl: skipped {skipped} line(s) that are damaged, nested too "
                "deeply, or hold a step or value out of range",
                stacklevel=3,
            )
        for metric, (steps_blob, vals_blob) in new.items():
            curve = cached.get(metric)
            if curve is None:
                curve = cached[metric] = (array("q"), array("d"))
            curve[0].frombytes(steps_blob)
            curve[1].frombytes(vals_blob)
            self.db.execute(
                "INSERT OR REPLACE INTO curves VALUES (?, ?, ?, ?)",
                (name, metric, curve[0].tobytes(), curve[1].tobytes()),
            )
        self.db.execute(
            "INSERT OR REPLACE INTO curve_files VALUES (?, ?, ?)", (name, inode, offset + used)
        )
        return cached

    def _load(self, name: str, only: str | None = None) -> dict[str, Curve]:
        sql, args = "SELECT metric, steps, vals FROM curves WHERE name=?", [name]
        if only is not None:
            sql, args = sql + " AND metric=?", [name, only]
        curves = {}
        for metric, steps_blob, vals_blob in self.db.execute(sql, args):
            steps, vals = array("q"), array("d")
            steps.frombytes(steps_blob)
            vals.frombytes(vals_blob)
            curves[metric] = (steps, vals)
        return curves


# What parsing a file's new lines gives: bytes used (complete lines), each metric's
# (steps, values) as packed arrays' bytes, and the number of lines skipped.
_Parsed = tuple[int, dict[str, tuple[bytes, bytes]], int]
PARALLEL_PARSE_BYTES = 8 << 20  # more to parse than this: a process per core


def _parse_files(stale: list[tuple[str, str, int, int, int]]) -> list[_Parsed]:
    """Parse each file's lines after its offset: in worker processes when there is much
    to parse (a cold report over 1,000 runs x 1,000 points)."""
    jobs = [(path, offset, size) for _, path, _, offset, size in stale]
    total = sum(size - offset for _, offset, size in jobs)
    return map_jobs(_parse_file, jobs, many=total >= PARALLEL_PARSE_BYTES)


def _parse_file(job: tuple[str, int, int]) -> _Parsed:
    path, offset, size = job
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(size - offset)
    except OSError:
        return 0, {}, 0
    complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits
    curves: dict[str, Curve] = {}
    _, skipped = _parse_into(curves, complete)
    packed = {key: (steps.tobytes(), vals.tobytes()) for key, (steps, vals) in curves.items()}
    return len(complete), packed, skipped


def _parse_into(curves: dict[str, Curve], data: bytes) -> tuple[set[str], int]:
    """Append the points of complete metrics lines to `curves`; returns the changed
    metrics and how many lines were skipped (a step outside int64, an int a float
    cannot hold: what `run.log` refuses, written by something else)."""
    steps: dict[str, list[int]] = {}
    values: dict[str, list[float]] = {}
    records, skipped = _records(data)
    for record in records:
        if type(record) is not dict:
            continue
        step = record.get("step")
        if type(step) is not int:
            continue
        if not rd.STEP_MIN <= step <= rd.STEP_MAX:
            skipped += 1
            continue
        for key, value in record.items():
            kind = type(value)  # exact types: bool is not a metric value
            if kind is int and not -rd.FLOAT_INT <= value <= rd.FLOAT_INT:
                skipped += 1
                continue
            if (kind is float or kind is int) and key != "step" and key != "time":
                found = values.get(key)
                if found is None:
                    found = values[key] = []
                    steps[key] = []
                found.append(value)
                steps[key].append(step)
    for key, found in values.items():
        curve = curves.get(key)
        if curve is None:
            curve = curves[key] = (array("q"), array("d"))
        curve[0].extend(steps[key])
        curve[1].extend(map(float, found))
    return set(values), skipped


def _records(data: bytes) -> tuple[list[Any], int]:
    """All lines as JSON: one parse of the whole chunk (fast), or line by line when a
    line is damaged, skipping it and keeping the rest. Also: how many were skipped."""
    text = data.decode("utf-8", errors="replace").strip()
    if not text:
        return [], 0
    try:
        records: list[Any] = json.loads("[" + text.replace("\n", ",") + "]")
        return records, 0
    except (ValueError, RecursionError):
        records, skipped = [], 0
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except (ValueError, RecursionError):
                skipped += int(bool(line.strip()))  # a line torn by a crash, or hostile
        return records, skipped


def load_curves(
    runs_root: Path, names: Iterable[str], metric: str | None = None
) -> dict[str, dict[str, Curve]]:
    cache = CurveCache(runs_root)
    try:
        return cache.curves(names, metric)
    finally:
        cache.close()
