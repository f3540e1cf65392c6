from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from xpkit.report.curves import CurveCache
from xpkit.report.plots import aggregate, plot_png
from xpkit.report.table import (
    ReportRun,
    Stat,
    best_group,
    fmt,
    format_stat,
    group_runs,
    lower_is_better,
    mean_std,
)


def run(name: str, lr: float, seed: int, **summary: object) -> ReportRun:
    return ReportRun(
        name=name, status="finished", params={"lr": lr, "seed": seed}, summary=dict(summary)
    )


def test_groups_collapse_seeds_and_aggregate() -> None:
    runs = [run("a1", 0.1, 0, acc=0.9, loss=1.0), run("a2", 0.1, 1, acc=0.8, loss=2.0),
            run("b1", 0.01, 0, acc=0.5, loss="n/a"), run("b2", 0.01, 1)]  # fmt: skip
    groups, keys = group_runs(runs, ["acc", "loss"])
    assert keys == ["lr"]
    assert [g.params for g in groups] == [{"lr": 0.1}, {"lr": 0.01}]
    assert groups[0].stats["acc"].n == 2
    assert groups[0].stats["acc"].mean == pytest.approx(0.85)
    assert groups[0].stats["acc"].std == pytest.approx(math.sqrt(0.005))
    assert "loss" not in groups[1].stats  # a non-numeric value is blank, never a crash
    assert best_group(groups, "acc") == 0 and best_group(groups, "loss") == 0
    by_seed, keys = group_runs(runs, ["acc"], group_by=("seed",))
    assert keys == ["seed"] and len(by_seed) == 2


def test_stats_and_formatting() -> None:
    assert mean_std([]) is None and mean_std(["x", None]) is None
    assert mean_std([2.0]) == Stat(2.0, 0.0, 1)
    assert format_stat(Stat(0.91234, 0.0123, 3)) == "0.91 ± 0.01 (n=3)"
    # one precision rule: the mean to the decimal of the std's first significant digit
    assert format_stat(Stat(0.2471, 0.0123, 3)) == "0.25 ± 0.01 (n=3)"
    assert format_stat(Stat(0.26312, 0.0051, 3)) == "0.263 ± 0.005 (n=3)"
    assert format_stat(Stat(0.5, 0.0096, 3), show_n=False) == "0.50 ± 0.01"
    assert format_stat(Stat(123.4, 12.6, 3)) == "120 ± 10 (n=3)"
    assert format_stat(Stat(0.9, 0.0, 2)) == "0.9 ± 0 (n=2)"
    assert fmt(None) == "" and fmt(3) == "3" and fmt(1 / 3) == "0.3333" and fmt("x") == "x"
    assert (
        lower_is_better("val/loss") and lower_is_better("error_rate") and not lower_is_better("acc")
    )


def write_metrics(path: Path, lines: list[dict[str, object]], mode: str = "a") -> None:
    with path.open(mode) as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def test_curve_cache_parses_only_what_was_appended(tmp_path: Path) -> None:
    run_dir = tmp_path / "abc123_001_x"
    run_dir.mkdir()
    metrics = run_dir / "metrics.jsonl"
    write_metrics(metrics, [{"step": i, "time": 0, "loss": 1.0 / (i + 1)} for i in range(3)])
    with metrics.open("a") as f:
        f.write('{"step": 3, "loss"')  # a half-written last line
    cache = CurveCache(tmp_path)
    first = cache.curves(["abc123_001_x"])["abc123_001_x"]
    assert list(first["loss"][0]) == [0, 1, 2]
    with metrics.open("a") as f:
        f.write(': 0.25}\n{"step": 4, "loss": 0.2, "acc": 0.5, "note": "text"}\n')
    second = cache.curves(["abc123_001_x"])["abc123_001_x"]
    assert list(second["loss"][0]) == [0, 1, 2, 3, 4]
    assert list(second["acc"][1]) == [0.5] and "note" not in second
    # a replaced (shorter) file is parsed again from the start
    write_metrics(metrics, [{"step": 9, "loss": 9.0}], mode="w")
    assert list(cache.curves(["abc123_001_x"])["abc123_001_x"]["loss"][0]) == [9]
    cache.close()
    reopened = CurveCache(tmp_path)  # the cache survives the process
    assert list(reopened.curves(["abc123_001_x"])["abc123_001_x"]["loss"][1]) == [9.0]
    reopened.close()


def test_aggregate_and_deterministic_png() -> None:
    from array import array

    a = (array("q", [0, 1, 2]), array("d", [1.0, 2.0, 3.0]))
    b = (array("q", [1, 2]), array("d", [4.0, 5.0]))
    steps, mean, low, high = aggregate([a, b])
    assert list(steps) == [0, 1, 2] and list(mean) == [1.0, 3.0, 4.0]
    assert list(low) == [1.0, 2.0, 3.0] and list(high) == [1.0, 4.0, 5.0]
    first = plot_png("loss", [("lr=0.1", [a, b]), ("lr=0.01", [a])])
    assert first.startswith(b"\x89PNG") and first == plot_png(
        "loss", [("lr=0.1", [a, b]), ("lr=0.01", [a])]
    )
    assert b"Matplotlib" not in first  # no version metadata: stable across upgrades of nothing


def test_a_tie_everywhere_has_no_best() -> None:
    runs = [run("a", 0.1, 0, epoch=14), run("b", 0.01, 0, epoch=14)]
    groups, _ = group_runs(runs, ["epoch"])
    assert best_group(groups, "epoch") is None
