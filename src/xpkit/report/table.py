"""Group runs into configurations and aggregate their metrics (mean ± std over seeds)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from xpkit.values import is_finite_number, lower_is_better

# Params that only repeat a configuration; runs differing in them are grouped together.
DEFAULT_IGNORED = ("seed",)


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int


@dataclass
class ReportRun:
    """What a report needs to know of one run."""

    name: str
    status: str
    params: dict[str, Any]
    summary: dict[str, Any]
    duration: float | None = None
    host: str | None = None
    commit: str | None = None
    snapshot: str | None = None


@dataclass
class Group:
    """Runs that share every grouping param: one configuration."""

    params: dict[str, Any]
    runs: list[ReportRun] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items()) or "all runs"


def mean_std(values: list[float]) -> Stat | None:
    """Mean and sample standard deviation (0 for a single value), or None if empty."""
    numbers = [float(v) for v in values if is_finite_number(v)]
    if not numbers:
        return None
    mean = math.fsum(numbers) / len(numbers)
    if len(numbers) == 1:
        return Stat(mean, 0.0, 1)
    variance = math.fsum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1)
    return Stat(mean, math.sqrt(variance), len(numbers))


def varying_keys(runs: list[ReportRun]) -> list[str]:
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.params))
    return [k for k in keys if len({repr(r.params.get(k)) for r in runs}) > 1]


def _ignored(key: str, ignore: tuple[str, ...]) -> bool:
    return any(key == name or key.endswith("." + name) for name in ignore)


def group_runs(
    runs: list[ReportRun],
    metrics: list[str],
    *,
    group_by: tuple[str, ...] = (),
    ignore: tuple[str, ...] = DEFAULT_IGNORED,
) -> tuple[list[Group], list[str]]:
    """Groups (in order of first appearance) and the keys they were grouped by.

    By default runs group by every param that varies, except `ignore`d ones (seeds);
    `group_by` names the keys explicitly instead.
    """
    keys = list(group_by) if group_by else [
        k for k in varying_keys(runs) if not _ignored(k, ignore)
    ]  # fmt: skip
    groups: dict[str, Group] = {}
    for run in runs:
        params = {k: run.params.get(k) for k in keys}
        group = groups.setdefault(repr(sorted(params.items(), key=lambda kv: kv[0])), Group(params))
        group.runs.append(run)
    for group in groups.values():
        for metric in metrics:
            stat = mean_std([r.summary.get(metric) for r in group.runs])  # type: ignore[misc]
            if stat is not None:
                group.stats[metric] = stat
    return list(groups.values()), keys


def best_group(groups: list[Group], metric: str) -> int | None:
    """Index of the group with the best mean of `metric` (None if no group has it)."""
    scored = [(g.stats[metric].mean, i) for i, g in enumerate(groups) if metric in g.stats]
    if not scored or (len(scored) > 1 and len({mean for mean, _ in scored}) == 1):
        return None  # nothing to compare, or a tie everywhere: nothing is best
    pick = min if lower_is_better(metric) else max
    return pick(scored, key=lambda pair: (pair[0], -pair[1]))[1]


def sort_groups(groups: list[Group], metric: str) -> list[Group]:
    """Best first by `metric`; groups without it last, in their original order."""
    sign = 1 if lower_is_better(metric) else -1
    return sorted(
        groups,
        key=lambda g: (0, sign * g.stats[metric].mean) if metric in g.stats else (1, 0.0),
    )


def fmt(value: Any, digits: int = 4) -> str:
    """A number as the report prints it: same input, same text, on every machine."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def format_stat(stat: Stat | None, digits: int = 4, show_n: bool = True) -> str:
    """`0.25 ± 0.01 (n=3)`: one rule for every cell, the mean to the decimal of the
    std's first significant digit (so two cells never differ in precision by chance);
    a single run or an exact repeat shows the mean as `fmt` does."""
    if stat is None:
        return ""
    n = f" (n={stat.n})" if show_n else ""
    if stat.n == 1 or not math.isfinite(stat.std):
        return f"{fmt(stat.mean, digits)}{n}"
    if stat.std == 0:  # every run gave the same value
        return f"{fmt(stat.mean, digits)} ± 0{n}"
    decimals = -math.floor(math.log10(stat.std))
    std = round(stat.std, decimals)
    if std >= 10.0 ** (1 - decimals):  # 0.0096 rounds to 0.01: one digit fewer
        decimals -= 1
        std = round(stat.std, decimals)
    if decimals > 0:
        return f"{stat.mean:.{decimals}f} ± {std:.{decimals}f}{n}"
    return f"{round(stat.mean, decimals):.0f} ± {std:.0f}{n}"


# Logged alongside results, but counters, not results: left out of a report's tables
# and curves unless asked for with --metric.
COUNTERS = re.compile(
    r"^(epoch|epochs|step|steps|global_step|iteration|iterations|iter|batch|batch_idx|"
    r"samples|samples_seen|tokens_seen|time|timestamp|wall_time|elapsed)$",
    re.IGNORECASE,
)


def is_counter(name: str) -> bool:
    return bool(COUNTERS.match(name))
