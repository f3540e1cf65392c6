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
from xpkit.suggest import close_to, did_you_mean
from xpkit.values import is_number, lower_is_better

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
        if is_number(actual):
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


PARAMS, METRICS, CONFIG = "params.", "summary.", "config."  # the namespaces, spelled out
FIELDS = ("tag", *ROW_FIELDS)


def lookup(row: RunRow, key: str) -> Any:
    """`params.X`, `summary.X`, `config.X` (a config.json value by dotted path), a run
    field; a bare name: a param, then a metric, then a config value (use `Names.resolve`
    first so that a typo or an ambiguous name is an error)."""
    if key.startswith(PARAMS):
        return row.params.get(key[len(PARAMS) :])
    if key.startswith(METRICS):
        return row.summary.get(key[len(METRICS) :])
    if key.startswith(CONFIG) and key not in row.config:
        return row.config.get(key[len(CONFIG) :])
    if key in row.params:
        return row.params[key]
    if key in row.summary:
        return row.summary[key]
    if key in row.config:
        return row.config[key]
    if key == "tag":
        return ",".join(row.tags)
    return getattr(row, key, None) if key in ROW_FIELDS else None


class Names:
    """The names the given runs know: their params, their summary metrics, run fields.
    A name a user types is resolved against them: unknown or ambiguous is an error."""

    def __init__(self, rows: list[RunRow]) -> None:
        self.empty = not rows
        self.params: dict[str, None] = {}
        for text in dict.fromkeys(r.params_json for r in rows):
            self.params.update(dict.fromkeys(json.loads(text)))
        self.metrics: dict[str, None] = {}
        for text in dict.fromkeys(r.summary_keys_json for r in rows):
            self.metrics.update(dict.fromkeys(json.loads(text)))
        self.config: dict[str, None] = {}
        for text in dict.fromkeys(r.config_json for r in rows):
            self.config.update(dict.fromkeys(json.loads(text)))

    def ambiguous(self, name: str) -> bool:
        return name in self.params and name in self.metrics

    def resolve(self, key: str, option: str) -> str:
        """`key` as it is looked up: `params.lr`, `summary.acc`, `config.model.depth`
        or a field."""
        if key.startswith(CONFIG) and key not in self.config:
            name = key[len(CONFIG) :]
            if self.empty or name in self.config:
                return key
            raise ConfigError(f"{option} {key!r}: these runs have no config value {name!r}"
                              + did_you_mean(name, self.config, "config values"))  # fmt: skip
        if key.startswith(PARAMS) or key.startswith(METRICS):
            table = self.params if key.startswith(PARAMS) else self.metrics
            name = key.split(".", 1)[1]
            if self.empty or name in table:
                return key
            space = key.split(".", 1)[0]
            raise ConfigError(
                f"{option} {key!r}: these runs have no {space} {name!r}"
                + did_you_mean(name, table, f"{space}")
            )
        if self.ambiguous(key):
            raise ConfigError(
                f"{option} {key!r}: {key} is both a param and a metric of these runs; "
                f"write {PARAMS}{key} or {METRICS}{key}"
            )
        if key in self.params:
            return PARAMS + key
        if key in self.metrics:
            return METRICS + key
        if key in FIELDS or self.empty:
            return key
        if key in self.config:
            return CONFIG + key
        known = [*self.params, *self.metrics, *self.config, *FIELDS]
        raise ConfigError(
            f"{option} {key!r}: no param, metric, config value or run field of these runs is "
            f"named {key!r}" + did_you_mean(key, known, "names")
        )

    def column(self, key: str, kind: str) -> str:
        """A table column title: the bare name, spelled out where it is ambiguous."""
        return (PARAMS if kind == "param" else METRICS) + key if self.ambiguous(key) else key


def parse_where(text: str, names_: Names | None = None, option: str = "--where") -> Condition:
    match = _CONDITION.match(text)
    if not match or not match[3] or match[3][0] in "<>=!":
        raise ConfigError(
            f"{option} {text!r} is not a condition. Write KEY OP VALUE with OP one of "
            "= != > >= < <=, e.g. --where 'lr=0.1' --where 'acc>0.9'"
        )
    from xpkit.values import parse_scalar

    key = names_.resolve(match[1], option) if names_ is not None else match[1]
    return Condition(key, match[2], parse_scalar(match[3]))


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
    param or field; rows without the key last. `key` as `Names.resolve` gives it."""
    is_metric = key.startswith(METRICS) or (
        not key.startswith(PARAMS) and any(key in row.summary for row in rows)
    )
    descending = is_metric and not lower_is_better(key.removeprefix(METRICS))

    def order(row: RunRow) -> tuple[int, Any]:
        found = lookup(row, key)
        if is_number(found):
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


def resolve_run(runs_root: Path, ref: str, folder: Path | None = None) -> RunDir:
    """A run by full name, unique prefix, or EXPID/TRIAL, in the runs root (or in
    `folder`, e.g. the trash); a reference that matches nothing says what is close."""
    folder = folder or runs_root
    ref = ref.strip().rstrip("/")
    if (folder / ref).is_dir() and names.RUN_NAME_PATTERN.match(ref):
        return RunDir(folder / ref)
    try:
        entries = [e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_dir()]
    except FileNotFoundError:
        entries = []
    entries = [n for n in entries if names.parse_run_name(n)]
    if "/" in ref:
        expid, _, trial = ref.partition("/")
        if not trial.isdigit():
            raise RunError(f"run {ref!r}: TRIAL must be a number, as in {expid}/7")
        candidates = [
            n for n in entries
            if (p := names.parse_run_name(n)) and p.expid == expid and p.trial == int(trial)
        ]  # fmt: skip
    else:
        candidates = [n for n in entries if n.startswith(ref)]
    if len(candidates) == 1:
        return RunDir(folder / candidates[0])
    if not candidates:
        heads: dict[str, list[str]] = {}  # a typo is in the part typed: compare prefixes
        for entry in sorted(entries):
            heads.setdefault(entry[: len(ref)], []).append(entry)
        close = [n for head in close_to(ref, heads) for n in heads[head]][:3]
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise RunError(
            f"no run matches {ref!r} in {folder}.{hint} Give a full run name, a unique "
            "prefix, or EXPID/TRIAL (e.g. k3j9x2/4); `xp ls` lists runs."
        )
    shown = ", ".join(sorted(candidates)[:8])
    raise RunError(f"{ref!r} matches {len(candidates)} runs ({shown}); give more characters")


@dataclass(frozen=True)
class Selection:
    """The runs a command acts on, as the user named them: runs (name, unique prefix,
    EXPID/TRIAL, or an experiment ID for all its runs) and filters that must all hold."""

    refs: tuple[str, ...] = ()
    exp: str | None = None  # an experiment ID
    statuses: tuple[str, ...] = ()
    older_than: str | None = None  # an age: 30d, 12h

    @property
    def filters(self) -> str:
        """The filters as typed, for "nothing matched" messages."""
        parts = [f"--exp {self.exp}"] if self.exp else []
        parts += [f"--status {s}" for s in self.statuses]
        if self.older_than is not None:
            parts.append(f"--older-than {self.older_than}")
        return " ".join(parts)


def select_runs(
    runs_root: Path, selection: Selection, *, ids_mean: tuple[str, ...] | None = None
) -> list[RunDir]:
    """Every run the selection names, each once, in the order given: its refs, then the
    runs matching all its filters. With `ids_mean`, a ref that is an experiment ID means
    that experiment's runs with those statuses (`xp cancel k3j9x2`); without, a ref is
    one run (a 6-character prefix of several runs is ambiguous, never "all of them").
    A ref that matches nothing is an error; filters that match nothing give nothing."""
    import time

    from xpkit.store.index import load_rows

    targets: list[RunDir] = []
    for ref in selection.refs:
        is_id = names.ID_PATTERN.match(ref) and not (runs_root / ref).exists()
        if ids_mean is not None and is_id:
            rows, _ = load_rows(runs_root, ref, ids_mean)
            targets += [RunDir(runs_root / r.name) for r in rows]
        else:
            targets.append(resolve_run(runs_root, ref))
    if selection.filters:
        from xpkit.store.trash import parse_age

        age = parse_age(selection.older_than) if selection.older_than else None
        rows, _ = load_rows(runs_root, selection.exp, selection.statuses)
        now = time.time()
        targets += [RunDir(runs_root / r.name) for r in rows
                    if age is None or (r.created and now - r.created > age)]  # fmt: skip
    unique: dict[str, RunDir] = {}
    for run_dir in targets:
        unique.setdefault(run_dir.name, run_dir)
    return list(unique.values())


def active_runs(
    runs_root: Path, refs: tuple[str, ...], *, all_queued: bool = False
) -> list[RunDir]:
    """The runs `xp cancel` acts on: each ref a run or an experiment ID (its queued and
    running runs), plus every queued run with `all_queued`."""
    selection = Selection(refs=refs)
    found = select_runs(runs_root, selection, ids_mean=("queued", "running"))
    if all_queued:
        queued = select_runs(runs_root, Selection(statuses=("queued",)))
        found = list({r.name: r for r in [*reversed(queued), *found]}.values())
    return found
