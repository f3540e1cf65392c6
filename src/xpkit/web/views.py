"""What each dashboard page shows, assembled from the runs root; no HTTP here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit.compare import differing_paths, flat_config
from xpkit.errors import XpError
from xpkit.report.curves import load_curves
from xpkit.store import rundir as rd
from xpkit.store.index import RunIndex, RunRow
from xpkit.store.query import (
    Names,
    filter_rows,
    metric_names,
    parse_where,
    resolve_run,
    sort_rows,
    varying_params,
)
from xpkit.web import files

PER_PAGE = 100
MAX_METRIC_COLUMNS = 8
FIELD_COLUMNS = ("name", "experiment", "status", "started", "duration", "host")
COMPARE_LIMITS = (2, 10)
# Keys the pages read from run.json; a run written by an older xpkit may lack some.
RUN_KEYS = ("name", "experiment_id", "experiment", "command", "host", "pid", "gpus", "created",
            "started", "ended", "duration", "exit_code", "reason", "tags", "params", "commit",
            "snapshot", "rerun_of")  # fmt: skip


def _read_run(run_dir: rd.RunDir) -> dict[str, Any]:
    run = {**dict.fromkeys(RUN_KEYS), **run_dir.read_run()}
    run["name"] = run_dir.name
    return run


@dataclass
class RunsQuery:
    """The runs page's filters, sort and page, as the URL carries them."""

    exp: str = ""
    statuses: tuple[str, ...] = ()
    tag: str = ""
    text: str = ""
    where: str = ""  # conditions separated by commas: "lr=0.1, acc>0.9"
    sort: str = ""
    desc: bool = False
    page: int = 1

    def conditions(self, known: Names) -> tuple[Any, ...]:
        return tuple(parse_where(part, known, "filter") for part in self.where.split(",")
                     if part.strip())  # fmt: skip


@dataclass
class RunsPage:
    rows: list[RunRow]
    total: int
    first: int  # position of the first row shown, from 1
    page: int
    pages: int
    params: list[str]
    metrics: list[str]
    experiments: list[tuple[str, str, int]]
    error: str = ""
    warnings: list[str] = field(default_factory=list)


def _matches_text(row: RunRow, text: str) -> bool:
    haystack = " ".join([row.name, row.experiment, row.command, row.host or "", *row.tags])
    return text.lower() in haystack.lower()


def runs_page(runs_root: Path, query: RunsQuery, per_page: int = PER_PAGE) -> RunsPage:
    """One page of the runs matching `query`; a bad condition is reported, not raised."""
    index = RunIndex(runs_root)
    try:
        index.refresh()
        experiments, warnings = index.experiments(), index.warnings
        if not (query.where.strip() or query.sort or query.tag or query.text):
            # Newest first, unfiltered: only the page is read (100,000 runs: 50 rows).
            total = index.count(query.exp or None, query.statuses)
            page, pages = _page_of(query.page, total, per_page)
            rows = index.rows(query.exp or None, query.statuses, per_page, (page - 1) * per_page)
            return _page(rows, rows, total, page, pages, per_page, experiments, warnings)
        rows = index.rows(query.exp or None, query.statuses)
    finally:
        index.close()
    error, known = "", Names(rows)
    try:
        conditions = query.conditions(known)
        sort = known.resolve(query.sort, "sort") if query.sort else ""
    except XpError as e:  # shown on the page, answered 400: never a quiet "no runs"
        conditions, sort, error = (), "", str(e)
    tags = (query.tag,) if query.tag else ()
    rows = filter_rows(rows, conditions=conditions, tags=tags)
    if query.text:
        rows = [r for r in rows if _matches_text(r, query.text)]
    if sort:
        rows = sort_rows(rows, sort)
        if query.desc:
            rows.reverse()
    page, pages = _page_of(query.page, len(rows), per_page)
    shown = rows[(page - 1) * per_page : page * per_page]
    return _page(shown, rows, len(rows), page, pages, per_page, experiments, warnings, error)


def _page_of(asked: int, total: int, per_page: int) -> tuple[int, int]:
    """(the page shown, the number of pages): `asked` kept within them."""
    pages = max(1, -(-total // per_page))
    return min(max(asked, 1), pages), pages


def _page(shown: list[RunRow], columns_from: list[RunRow], total: int, page: int, pages: int,
          per_page: int, experiments: list[tuple[str, str, int]], warnings: list[str],
          error: str = "") -> RunsPage:  # fmt: skip
    """The page of `shown` runs, with the params and metrics of `columns_from` as columns."""
    return RunsPage(
        rows=shown, total=total, first=(page - 1) * per_page + 1, page=page, pages=pages,
        params=varying_params(columns_from),
        metrics=metric_names(columns_from)[:MAX_METRIC_COLUMNS], experiments=experiments,
        error=error, warnings=warnings,
    )  # fmt: skip


def statuses(runs_root: Path, run_names: list[str]) -> dict[str, str]:
    """The live status of each named run (for the runs table's polling)."""
    found = {}
    for name in run_names:
        run = files.run_dir(runs_root, name)
        if run is not None:
            try:
                found[name] = rd.status_of(run, run.read_run())
            except XpError:
                found[name] = "corrupt"
    return found


@dataclass
class RunPage:
    run: dict[str, Any]
    status: str
    config: Any
    git: dict[str, Any]
    env: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[tuple[str, int]]  # name, number of points
    artifacts: list[dict[str, Any]]


def run_page(runs_root: Path, name: str) -> RunPage | None:
    run_dir = files.run_dir(runs_root, name)
    if run_dir is None:
        return None
    run = _read_run(run_dir)
    curves = load_curves(runs_root, [name]).get(name, {})
    return RunPage(
        run=run,
        status=rd.status_of(run_dir, run),
        config=run_dir.read_optional(rd.CONFIG_JSON),
        git=run_dir.read_optional(rd.GIT_JSON, {}) or {},
        env=run_dir.read_optional(rd.ENV_JSON, {}) or {},
        summary=run_dir.read_optional(rd.SUMMARY_JSON, {}) or {},
        metrics=sorted((metric, len(curve[0])) for metric, curve in curves.items()),
        artifacts=files.artifacts(run_dir),
    )


def metric_series(
    runs_root: Path, name: str, metric: str, x0: float | None, x1: float | None, points: int
) -> dict[str, Any] | None:
    from xpkit.web.series import window

    if files.run_dir(runs_root, name) is None:
        return None
    curve = load_curves(runs_root, [name], metric).get(name, {}).get(metric)
    if curve is None:
        return None
    return window(curve[0], curve[1], x0, x1, points)


@dataclass
class ComparePage:
    runs: list[dict[str, Any]]  # run.json plus "summary" and "status"
    metrics: list[str]
    config: list[tuple[str, list[Any]]]  # JSON path, value per run (those that differ)
    params: list[tuple[str, list[Any]]]
    summary: list[tuple[str, list[Any]]]


def compare_page(runs_root: Path, run_names: list[str]) -> ComparePage:
    """2 to 10 runs side by side. Raises XpError naming what is wrong with the choice."""
    low, high = COMPARE_LIMITS
    unique = list(dict.fromkeys(run_names))
    if not low <= len(unique) <= high:
        raise XpError(f"compare takes {low} to {high} different runs; {len(unique)} given")
    # The same references as on the command line: a name, a unique prefix, EXPID/TRIAL.
    dirs = list({d.name: d for d in (resolve_run(runs_root, ref) for ref in unique)}.values())
    if len(dirs) < low:
        raise XpError(f"compare takes {low} to {high} different runs; {len(dirs)} given")
    unique = [d.name for d in dirs]
    runs, configs = [], []
    for run_dir in dirs:
        run = _read_run(run_dir)
        run["status"] = rd.status_of(run_dir, run)
        run["summary"] = run_dir.read_optional(rd.SUMMARY_JSON, {}) or {}
        runs.append(run)
        configs.append(flat_config(run_dir.read_optional(rd.CONFIG_JSON)))
    curves = load_curves(runs_root, unique)
    metrics = sorted({m for per_run in curves.values() for m in per_run})
    params = [r.get("params") or {} for r in runs]
    summaries = [r["summary"] for r in runs]
    return ComparePage(
        runs=runs,
        metrics=metrics,
        config=[(p, [c.get(p, MISSING) for c in configs]) for p in differing_paths(configs)],
        params=[(p, [c.get(p, MISSING) for c in params]) for p in differing_paths(params)],
        summary=[(k, [s.get(k, MISSING) for s in summaries])
                 for k in dict.fromkeys(k for s in summaries for k in s)],
    )  # fmt: skip


class _Missing:
    def __str__(self) -> str:
        return "—"


MISSING = _Missing()


def age_text(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "—"
