"""The search part of a report (an experiment with [search], run by `xp sweep`): the
best trial, the top trials, the optimization history and parallel coordinates (PNGs),
parameter importances (Optuna's fANOVA on an in-memory study of the finished trials).

Everything comes from the runs: the report is the same on any machine."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from xpkit.errors import ConfigError
from xpkit.report.plots import DPI, FIGSIZE
from xpkit.report.table import ReportRun
from xpkit.search import Search, fits, frozen, import_optuna
from xpkit.store.rundir import RunDir
from xpkit.values import is_finite_number

TOP = 10
Point = TypeVar("Point", bound="TrialPoint")


@dataclass
class TrialPoint:
    key: int
    run: str
    status: str
    value: float | None  # the metric: final when finished, the last logged when pruned
    params: dict[str, Any]


def trial_points(runs_root: Path, runs: list[ReportRun], search: Search) -> list[TrialPoint]:
    """One point per trial (its latest run: a lost one retried counts once), by key."""
    latest: dict[int, TrialPoint] = {}
    for run in sorted(runs, key=lambda r: r.name):
        recorded = (RunDir(runs_root / run.name).read_optional("run.json", {}) or {}).get("search")
        if not isinstance(recorded, dict) or not isinstance(recorded.get("trial"), int):
            continue
        value: Any = run.summary.get(search.metric)
        params = {k: run.params[k] for k in search.params if k in run.params}
        latest[recorded["trial"]] = TrialPoint(
            recorded["trial"], run.name, run.status,
            float(value) if is_finite_number(value) else None, params,
        )  # fmt: skip
    return [latest[k] for k in sorted(latest)]


def ranked(points: Sequence[Point], search: Search) -> list[Point]:
    """Finished trials with a value, best first (ties: the earlier trial)."""
    sign = 1.0 if search.goal == "minimize" else -1.0
    done = [p for p in points if p.status == "finished" and p.value is not None]
    return sorted(done, key=lambda p: (sign * (p.value or 0.0), p.key))


def importances(points: list[TrialPoint], search: Search) -> tuple[list[tuple[str, float]], str]:
    """(param, importance) by importance, and how they were computed (or why not)."""
    try:
        optuna = import_optuna()
    except ConfigError as e:  # a report is still made without the sweep extra
        return [], str(e)
    finished = [p for p in ranked(points, search) if fits(search, p.params)]
    varied = [n for n in search.params if len({repr(p.params.get(n)) for p in finished}) > 1]
    if len(finished) < 3 or not varied:
        return [], "needs 3 finished trials that vary their params"
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    evaluator: Any = FanovaImportanceEvaluator(seed=0)
    how = "fANOVA"
    try:
        import sklearn  # type: ignore[import-untyped]  # noqa: F401 - fANOVA's random forest
    except ImportError:
        evaluator, how = PedAnovaImportanceEvaluator(), "PED-ANOVA (no scikit-learn)"
    study = optuna.create_study(direction=search.goal)
    for point in finished:
        study.add_trial(frozen(search, point.params, state="COMPLETE", value=point.value,
                               intermediate={}, attrs={}))  # fmt: skip
    found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return [(name, round(float(value), 4)) for name, value in found.items()], how


def search_section(
    runs_root: Path, runs: list[ReportRun], search: Search, assets: str | None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The template's `search` and the PNGs it links (paths relative to the report)."""
    points = trial_points(runs_root, runs, search)
    best = ranked(points, search)
    counts: dict[str, int] = {}
    for point in points:
        counts[point.status] = counts.get(point.status, 0) + 1
    found, how = importances(points, search)
    images: dict[str, bytes] = {}
    if assets is not None and best:
        images[f"{assets}/search-history.png"] = history_png(points, search)
        images[f"{assets}/search-parallel.png"] = parallel_png(points, search)
    section = {
        "method": search.method, "metric": search.metric, "goal": search.goal,
        "planned": search.planned, "pruner": search.pruner["type"], "counts": counts,
        "params": list(search.params), "trials": [asdict(p) for p in points],
        "best": asdict(best[0]) if best else None, "top": [asdict(p) for p in best[:TOP]],
        "importances": found, "importance_method": how, "images": sorted(images),
        "parallel": parallel_lines(points, search),
    }  # fmt: skip
    return section, images


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Any) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def history_png(points: list[TrialPoint], search: Search) -> bytes:
    """Each trial's value by trial number (pruned ones hollow) and the best so far."""
    import matplotlib

    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        figure, axes = _figure()
        for status, marker in (("finished", "o"), ("pruned", "x")):
            shown = [p for p in points if p.status == status and p.value is not None]
            axes.scatter([p.key for p in shown], [p.value for p in shown], marker=marker,
                         s=18, label=status, alpha=0.8)  # fmt: skip
        steps, best, current = [], [], None
        pick = min if search.goal == "minimize" else max
        for point in points:
            if point.status == "finished" and point.value is not None:
                current = point.value if current is None else pick(current, point.value)
            if current is not None:
                steps.append(point.key)
                best.append(current)
        axes.step(steps, best, where="post", color="black", linewidth=1.2, label="best so far")
        axes.set_xlabel("trial")
        axes.set_ylabel(search.metric)
        axes.set_title(f"{search.metric} by trial ({search.goal})")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
        return _png(figure)


def parallel_lines(points: list[TrialPoint], search: Search) -> dict[str, Any]:
    """Parallel coordinates of the finished trials, best first: each axis (a param, then
    the metric) scaled to 0..1 over its range (log ranges in log, values by position),
    with the ends of each range to label it."""
    done = ranked(points, search)
    values = [p.value for p in done if p.value is not None]
    axes: list[dict[str, Any]] = []
    for name, space in search.params.items():
        ends = list(space.values[:: max(1, len(space.values) - 1)]) if space.kind == "values" \
            else [space.low, space.high]  # fmt: skip
        axes.append({"name": name, "low": ends[0], "high": ends[-1]})
    axes.append({"name": search.metric, "low": min(values, default=0.0),
                 "high": max(values, default=0.0)})  # fmt: skip

    def scaled(name: str, value: Any) -> float:
        if name == search.metric:
            low, high = axes[-1]["low"], axes[-1]["high"]
        else:
            space = search.params[name]
            if space.kind == "values":
                return space.values.index(value) / max(1, len(space.values) - 1)
            low, high = float(space.low or 0), float(space.high or 0)
            if space.log:
                value, low, high = math.log(value), math.log(low), math.log(high)
        return 0.5 if high == low else round((float(value) - low) / (high - low), 6)

    lines = []
    for point in done:
        row = [*(point.params.get(n) for n in search.params), point.value]
        if all(v is not None for v in row):
            names = [*search.params, search.metric]
            lines.append({"key": point.key, "run": point.run, "value": point.value,
                          "y": [scaled(n, v) for n, v in zip(names, row)]})  # fmt: skip
    return {"axes": axes, "lines": lines}


def parallel_png(points: list[TrialPoint], search: Search) -> bytes:
    """One line per finished trial across its params and the metric; the better the
    trial, the darker its line."""
    import matplotlib

    drawn = parallel_lines(points, search)
    axes_info, lines = drawn["axes"], drawn["lines"]
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        figure, axes = _figure()
        cmap = matplotlib.colormaps["viridis"]
        for rank, line in reversed(list(enumerate(lines))):
            shade = rank / max(1, len(lines) - 1)
            axes.plot(range(len(axes_info)), line["y"], color=cmap(shade), linewidth=1, alpha=0.8)
        for index, axis in enumerate(axes_info):  # each axis's range at its ends
            for y, end in ((0, axis["low"]), (1, axis["high"])):
                text = f"{end:.3g}" if isinstance(end, float) else str(end)
                axes.annotate(text, (index, y), textcoords="offset points", xytext=(3, 0),
                              fontsize="x-small", va="center")  # fmt: skip
        axes.set_xticks(range(len(axes_info)), [a["name"] for a in axes_info])
        axes.set_yticks([])
        axes.set_title(f"finished trials (darker: better {search.metric})")
        axes.grid(True, axis="x", alpha=0.5)
        return _png(figure)
