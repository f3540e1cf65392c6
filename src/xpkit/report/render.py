"""Render a report: the documented template context, jinja2 (StrictUndefined, no
autoescape), and the curve PNGs the template asks for with plot(metric)."""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit.errors import ConfigError
from xpkit.report.curves import Curve
from xpkit.report.table import (
    DEFAULT_IGNORED,
    Group,
    ReportRun,
    best_group,
    fmt,
    format_stat,
    group_runs,
    is_counter,
    sort_groups,
    varying_keys,
)
from xpkit.suggest import did_you_mean
from xpkit.values import format_duration, is_finite_number

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "report.md.j2"

# What a template can use; printed by `xp report --template-context`.
CONTEXT_DOC = {
    "experiment": "dict: id, name, description, file, command, grid (param -> values), tags",
    "runs": "every run of the selection, by name: objects with name, status, params, summary, "
    "duration, host, commit, snapshot",
    "counted": "the runs that count in results and curves (see --status)",
    "statuses": "the statuses that count (default: finished)",
    "status_counts": "dict status -> number of runs, every status",
    "snapshots": "list of dicts commit, snapshot, runs: the code the runs used",
    "varying": "params whose values differ between runs",
    "group_keys": "params the results table groups by (varying minus ignored, or --group-by)",
    "ignored": "params whose runs count as repeats (default: seed)",
    "groups": "configurations: objects with params (dict), runs (list), stats (metric -> "
    "mean, std, n), label",
    "metrics": "summary metrics shown (numeric; --metric selects)",
    "curves": "metrics with logged curves (--metric selects)",
    "fmt(value, digits=4)": "a number as text, deterministic ('' for missing)",
    "num(value, digits=4)": "like fmt, but '' for anything that is not a finite number",
    "mean_std(group, metric, n=True)": "'mean ± std (n=N)' of a group's metric (n=False: "
    "without '(n=N)' when row_n gives the row's count)",
    "row_n(group)": "how many runs are behind each cell of the row, when it is one number",
    "best(metric)": "the best group for metric (None if no group has it)",
    "is_best(group, metric)": "whether group is the best for metric (max, or min for losses)",
    "plot(metric)": "path of the curve PNG of metric, relative to the report; creates it",
    "cell(value)": "a value escaped for a Markdown table cell",
    "duration(seconds)": "a duration as 12.3s / 4m05s / 1h02m",
    "search": "None, or for an experiment with [search]: dict method, metric, goal, planned, "
    "pruner, counts, params, trials (key, run, status, value, params), best, top, "
    "importances ((param, importance) pairs), importance_method, images (PNG paths)",
}


@dataclass
class ReportOptions:
    metrics: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    ignore: tuple[str, ...] = DEFAULT_IGNORED
    statuses: tuple[str, ...] = ("finished",)
    sort: str | None = None


@dataclass
class Report:
    markdown: str
    images: dict[str, bytes] = field(default_factory=dict)  # path relative to the report
    search: dict[str, Any] | None = None  # the `search` of the context (the dashboard draws it)


def summary_metrics(runs: list[ReportRun], chosen: tuple[str, ...]) -> list[str]:
    """The chosen metrics, or every numeric summary value that is not a counter."""
    found = {k for run in runs for k, v in run.summary.items() if is_finite_number(v)}
    if chosen:
        return [m for m in chosen if m in found]
    return sorted(m for m in found if not is_counter(m))


def _row_n(group: Group, metrics: list[str]) -> int | None:
    """The number of runs behind every cell of a row, when it is the same for all (then
    it has a column of its own instead of a "(n=3)" in each cell)."""
    counts = {group.stats[m].n for m in metrics if m in group.stats}
    return counts.pop() if len(counts) == 1 else None


def _check_names(
    runs: list[ReportRun], curves: dict[str, dict[str, Curve]], options: ReportOptions
) -> None:
    """--metric, --sort and --group-by name what these runs have: a typo is an error,
    never a report that silently leaves the column out."""
    if not runs:
        return
    metrics = {k for run in runs for k in run.summary} | {
        m for run in runs for m in curves.get(run.name, {})
    }
    params = {k for run in runs for k in run.params}
    for option, names, known, what in (
        ("--metric", options.metrics, metrics, "metrics"),
        ("--sort", (options.sort,) if options.sort else (), metrics, "metrics"),
        ("--group-by", options.group_by, params, "params"),
    ):
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"{option} {name!r}: the runs of this report have no {what[:-1]} {name!r}"
                    + did_you_mean(name, known, what)
                )


def render_report(
    experiment: dict[str, Any],
    runs: list[ReportRun],
    curves: dict[str, dict[str, Curve]],
    options: ReportOptions,
    *,
    assets: str | None,
    template: Path | None = None,
    search: dict[str, Any] | None = None,
) -> Report:
    """The Markdown (and PNGs under `assets`, a folder name relative to the report;
    None: no plots, e.g. for stdout)."""
    runs = sorted(runs, key=lambda r: r.name)
    counted = [r for r in runs if r.status in options.statuses]
    _check_names(counted, curves, options)
    metrics = summary_metrics(counted, options.metrics)
    groups, group_keys = group_runs(counted, metrics, group_by=options.group_by,
                                    ignore=options.ignore)  # fmt: skip
    if options.sort:
        groups = sort_groups(groups, options.sort)
    logged = sorted({m for run in counted for m in curves.get(run.name, {})})
    curve_metrics = [m for m in (options.metrics or logged) if m in logged
                     and (options.metrics or not is_counter(m))]  # fmt: skip
    best = {m: best_group(groups, m) for m in metrics}
    images: dict[str, bytes] = {}

    def plot(metric: str) -> str:
        if assets is None:
            return ""
        relative = f"{assets}/curve-{_file_part(metric)}.png"
        if relative not in images:
            from xpkit.report.plots import plot_png

            series = [(g.label, _group_curves(g, curves, metric)) for g in groups]
            images[relative] = plot_png(metric, series)
        return relative

    status_counts: dict[str, int] = {}
    for run in runs:
        status_counts[run.status] = status_counts.get(run.status, 0) + 1
    context: dict[str, Any] = {
        "experiment": experiment,
        "runs": runs,
        "counted": counted,
        "statuses": list(options.statuses),
        "status_counts": dict(sorted(status_counts.items())),
        "snapshots": _snapshots(runs),
        "varying": varying_keys(runs),
        "group_keys": group_keys,
        "ignored": [] if options.group_by else [
            k for k in varying_keys(counted) if k not in group_keys
        ],
        "groups": groups,
        "metrics": metrics,
        "curves": curve_metrics if assets is not None else [],
        "fmt": fmt,
        "num": lambda value, digits=4: fmt(value, digits) if is_finite_number(value) else "",
        "mean_std": lambda group, metric, n=True: format_stat(
            group.stats.get(metric), show_n=n or _row_n(group, metrics) is None
        ),
        "row_n": lambda group: _row_n(group, metrics),
        "best": lambda metric: _best(groups, best, metric),
        "is_best": lambda group, metric: len(groups) > 1 and _best(groups, best, metric) is group,
        "plot": plot,
        "cell": _cell,
        "duration": format_duration,
        "search": search,
    }  # fmt: skip
    markdown = render_template(template or DEFAULT_TEMPLATE, context)
    return Report(markdown=markdown, images=images, search=search)


def _best(groups: list[Group], best: dict[str, int | None], metric: str) -> Group | None:
    index = best.get(metric)
    return None if index is None else groups[index]


def _group_curves(group: Group, curves: dict[str, dict[str, Curve]], metric: str) -> list[Curve]:
    return [curves[r.name][metric] for r in group.runs if metric in curves.get(r.name, {})]


def render_template(path: Path, context: dict[str, Any]) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    try:
        template = environment.get_template(path.name)
        text = template.render(context)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.TemplateNotFound as e:
        raise ConfigError(f"{path}: template not found: {e}") from None
    except Exception as e:  # UndefinedError, errors in helpers: name the template line
        line = _template_line(e, path)
        raise ConfigError(f"{path}{line}: {type(e).__name__}: {e}") from None
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def _template_line(error: Exception, path: Path) -> str:
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename == str(path):
            return f":{frame.lineno}"
    return ""


def _snapshots(runs: list[ReportRun]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        if run.snapshot:
            key = ((run.commit or "-")[:12], run.snapshot[:12])
            counts[key] = counts.get(key, 0) + 1
    return [{"commit": c, "snapshot": s, "runs": n} for (c, s), n in sorted(counts.items())]


def _cell(value: Any) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def _file_part(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", metric).strip("_") or "metric"
