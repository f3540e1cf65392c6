"""Find runs: resolve a RUN reference, filter rows with `--where` conditions."""

from __future__ import annotations

import json
import operator
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import ConfigError, RunError
from xpkit.store.index import ROW_FIELDS, RunRow
from xpkit.store.rundir import RunDir

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "!=": operator.ne,
    "==": operator.eq,
    "=": operator.eq,
    ">": operator.gt,
    "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any

    def matches(self, row: RunRow) -> bool:
        actual = lookup(row, self.key)
        if actual is None:
            return self.op == "!="
        expected = self.value
        if isinstance(actual, (int, float)) and not isinstance(actual, bool):
            if not isinstance(expected, (int, float)):
                return self.op == "!="
        elif isinstance(actual, bool) or isinstance(expected, bool):
            if not isinstance(expected, bool) or not isinstance(actual, bool):
                expected, actual = str(expected).lower(), str(actual).lower()
        else:
            actual, expected = str(actual), str(expected)
        try:
            return _OPERATORS[self.op](actual, expected)
        except TypeError:
            return False


def lookup(row: RunRow, key: str) -> Any:
    """A param, then a summary metric, then a run field, by name."""
    if key in row.params:
        return row.params[key]
    if key in row.summary:
        return row.summary[key]
    for prefix, table in (("params.", row.params), ("summary.", row.summary)):
        if key.startswith(prefix):
            return table.get(key[len(prefix) :])
    if key == "tag":
        return ",".join(row.tags)
    return getattr(row, key, None) if key in ROW_FIELDS else None


def parse_where(text: str) -> Condition:
    match = _CONDITION.match(text)
    if not match:
        raise ConfigError(
            f"--where {text!r} is not a condition. Write KEY OP VALUE with OP one of "
            "= != > >= < <=, e.g. --where 'lr=0.1' --where 'acc>0.9'"
        )
    from xpkit.experiment import parse_scalar

    return Condition(match[1], match[2], parse_scalar(match[3]))


def filter_rows(
    rows: list[RunRow],
    *,
    conditions: tuple[Condition, ...] = (),
    tags: tuple[str, ...] = (),
) -> list[RunRow]:
    if not conditions and not tags:
        return rows
    return [
        row
        for row in rows
        if all(tag in row.tags for tag in tags) and all(c.matches(row) for c in conditions)
    ]


def sort_rows(rows: list[RunRow], key: str) -> list[RunRow]:
    """Best first by a metric (lowest first for loss-like names), else ascending by a
    param or field; rows without the key last."""
    from xpkit.report.table import lower_is_better

    is_metric = any(key in row.summary for row in rows)
    descending = is_metric and not lower_is_better(key)

    def order(row: RunRow) -> tuple[int, Any]:
        found = lookup(row, key)
        if isinstance(found, (int, float)) and not isinstance(found, bool):
            return (0, -found if descending else found)
        return (1, 0) if found is None else (0, str(found))

    try:
        return sorted(rows, key=order)
    except TypeError:  # numbers and strings mixed under one key: compare as text
        return sorted(rows, key=lambda r: str(lookup(r, key)))


def varying_params(rows: list[RunRow]) -> list[str]:
    """Params whose values differ between the rows (the interesting columns)."""
    # Runs of a grid share few distinct params: decode each distinct text once.
    distinct = [json.loads(text) for text in dict.fromkeys(r.params_json for r in rows)]
    keys: dict[str, None] = {}
    for params in distinct:
        keys.update(dict.fromkeys(params))
    return [k for k in keys if len({repr(p.get(k)) for p in distinct}) > 1]


def metric_names(rows: list[RunRow]) -> list[str]:
    """Summary metrics of the rows, in first-seen order; `_private` ones left out."""
    found: dict[str, None] = {}
    for text in dict.fromkeys(r.summary_keys_json for r in rows):
        found.update(dict.fromkeys(k for k in json.loads(text) if not k.startswith("_")))
    return list(found)


def resolve_run(runs_root: Path, ref: str) -> RunDir:
    """A run by full name, unique prefix, or EXPID/TRIAL."""
    ref = ref.strip().rstrip("/")
    if (runs_root / ref).is_dir() and names.RUN_NAME_PATTERN.match(ref):
        return RunDir(runs_root / ref)
    try:
        entries = [e.name for e in os.scandir(runs_root) if not e.name.startswith(".")]
    except FileNotFoundError:
        entries = []
    if "/" in ref:
        expid, _, trial = ref.partition("/")
        if not trial.isdigit():
            raise RunError(f"run {ref!r}: TRIAL must be a number, as in {expid}/7")
        candidates = [
            n for n in entries
            if (p := names.parse_run_name(n)) and p.expid == expid and p.trial == int(trial)
        ]  # fmt: skip
    else:
        candidates = [n for n in entries if n.startswith(ref) and names.parse_run_name(n)]
    if len(candidates) == 1:
        return RunDir(runs_root / candidates[0])
    if not candidates:
        raise RunError(
            f"no run matches {ref!r} in {runs_root}. Give a full run name, a unique prefix, "
            "or EXPID/TRIAL (e.g. k3j9x2/4); `xp ls` lists runs."
        )
    shown = ", ".join(sorted(candidates)[:8])
    raise RunError(f"{ref!r} matches {len(candidates)} runs ({shown}); give more characters")


def active_runs(
    runs_root: Path, refs: tuple[str, ...], *, all_queued: bool = False
) -> list[RunDir]:
    """The runs a command on queued/running runs acts on (`xp cancel`): each ref a run
    (name, prefix, EXPID/TRIAL) or an experiment ID (its queued and running runs), plus
    every queued run with `all_queued`. Each run once, in the order given."""
    from xpkit.store.index import load_rows

    targets: list[RunDir] = []
    if all_queued:
        rows, _ = load_rows(runs_root, statuses=("queued",))
        targets += [RunDir(runs_root / r.name) for r in reversed(rows)]
    for ref in refs:
        if names.ID_PATTERN.match(ref) and not (runs_root / ref).exists():
            rows, _ = load_rows(runs_root, ref, statuses=("queued", "running"))
            targets += [RunDir(runs_root / r.name) for r in rows]
        else:
            targets.append(resolve_run(runs_root, ref))
    unique: dict[str, RunDir] = {}
    for run_dir in targets:
        unique.setdefault(run_dir.name, run_dir)
    return list(unique.values())
