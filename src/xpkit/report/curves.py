"""Metric curves of runs, read through a per-run cache.

metrics.jsonl is append-only, so the cache (tables beside the run index, on local
disk) remembers how many bytes of each run's file it has parsed and parses only what
was appended since. Curves are stored as packed arrays: loading 1,000 runs × 1,000
points is a memcpy per curve, not a million json.loads.
"""

from __future__ import annotations

import json
import warnings
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
        result = {}
        with self.db:
            for name in names:
                result[name] = self._run_curves(name, metric)
        return result

    def _run_curves(self, name: str, metric: str | None) -> dict[str, Curve]:
        path = self.runs_root / name / rd.METRICS
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        row = self.db.execute(
            "SELECT inode, offset FROM curve_files WHERE name=?", (name,)
        ).fetchone()
        offset = 0
        if row and row[0] == stat.st_ino and row[1] <= stat.st_size:
            offset = row[1]
            if offset == stat.st_size:
                return self._load(name, metric)
            cached = self._load(name)
        else:
            cached = {}  # new, replaced or truncated file: parse it whole
            self.db.execute("DELETE FROM curves WHERE name=?", (name,))
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(stat.st_size - offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits
        changed, skipped = _parse_into(cached, complete)
        if skipped:
            warnings.warn(
                f"{name}: metrics.jsonl: skipped {skipped} line(s) that are damaged, nested too "
                "deeply, or hold a step or value out of range",
                stacklevel=2,
            )
        for metric in changed:
            steps, vals = cached[metric]
            self.db.execute(
                "INSERT OR REPLACE INTO curves VALUES (?, ?, ?, ?)",
                (name, metric, steps.tobytes(), vals.tobytes()),
            )
        self.db.execute(
            "INSERT OR REPLACE INTO curve_files VALUES (?, ?, ?)",
            (name, stat.st_ino, offset + len(complete)),
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
