"""Valid JSON with hostile values, in run.json, summary.json or metrics.jsonl: every
command and the dashboard skip the run (or the lines) with a warning naming the run and
the field, and everything else still lists, reports and renders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import Result, runs_of
from ui.conftest import AUTH, start_ui, stop

pytestmark = pytest.mark.integration
EXP = "experiments/toy/01_base.xp.toml"
DEEP = "[" * 5000 + "1" + "]" * 5000

RUN_JSON_FAULTS = {
    "trial-2**70": ({"trial": 2**70}, "'trial'"),
    "status-dict": ({"status": {"x": 1}}, "'status'"),
    "status-unknown": ({"status": "exploded"}, "'status'"),
    "params-list": ({"params": ["lr"]}, "'params'"),
    "tags-string": ({"tags": "t"}, "'tags'"),
    "started-text": ({"started": "yesterday"}, "'started'"),
    "gpus-dict": ({"gpus": {"a": 1}}, "'gpus'"),
    "experiment-string": ({"experiment": "s"}, "'experiment'"),
}


@pytest.fixture
def two_runs(git_project: Path, xp: Callable[..., Result]) -> tuple[Path, Path]:
    assert xp("run", EXP, cwd=git_project).returncode == 0
    good, bad = runs_of(git_project / "runs")
    return good, bad


def _every_reader(project: Path, xp: Callable[..., Result], good: Path) -> list[Result]:
    """The commands a user runs over all runs, and the dashboard's runs page."""
    results = [
        xp(*args, cwd=project)
        for args in (
            ["ls"], ["ls", "--status", "finished"], ["ls", "--where", "lr>0"],
            ["report", EXP], ["cancel", "abc123"], ["rm", "--status", "failed", "--yes"],
            ["worker", "--once", "--requeue-lost"], ["show", good.name], ["gc"],
        )
    ]  # fmt: skip
    proc, url = start_ui(project)
    try:
        base = url.split("?")[0].rstrip("/")
        for path in ("/", f"/runs/{good.name}", "/experiments/abc123/", "/queue"):
            page = httpx.get(base + path, headers=AUTH, timeout=60)
            assert page.status_code == 200, (path, page.text[-500:])
            assert good.name in page.text or path == "/queue"
    finally:
        stop(proc)
    for result in results:
        assert "Traceback" not in result.output, result.output
    return results


@pytest.mark.parametrize("fault", list(RUN_JSON_FAULTS))
def test_a_hostile_run_json_is_skipped_with_a_warning(
    git_project: Path, xp: Callable[..., Result], two_runs: tuple[Path, Path], fault: str
) -> None:
    good, bad = two_runs
    changes, field = RUN_JSON_FAULTS[fault]
    info = json.loads((bad / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps({**info, **changes}))
    results = _every_reader(git_project, xp, good)
    listing = results[0]
    assert listing.returncode == 0 and good.name in listing.stdout
    assert bad.name not in listing.stdout
    assert listing.stderr.count(f"skipped run {bad.name}: run.json: {field}") == 1
    assert results[3].returncode == 0  # report
    assert results[6].returncode == 0  # worker
    shown = xp("show", bad.name, cwd=git_project)
    assert shown.returncode == 2 and field in shown.stderr and "Traceback" not in shown.output
    assert bad.is_dir()  # nothing lost: `xp rm` can still move it to the trash


def test_a_hostile_summary_skips_its_run(
    git_project: Path, xp: Callable[..., Result], two_runs: tuple[Path, Path]
) -> None:
    good, bad = two_runs
    (bad / "summary.json").write_text('{"acc": ' + DEEP + "}")
    listing = _every_reader(git_project, xp, good)[0]
    assert f"skipped run {bad.name}: summary.json" in listing.stderr
    (bad / "new.json").write_text('{"acc": 1' + "0" * 400 + "}")
    (bad / "new.json").rename(bad / "summary.json")  # as xpkit writes it: atomically
    listing = xp("ls", cwd=git_project)
    assert (
        "'acc'" in listing.stderr and "too large" in listing.stderr and good.name in listing.stdout
    )


def test_hostile_metric_lines_are_skipped_and_the_rest_is_kept(
    git_project: Path, xp: Callable[..., Result], two_runs: tuple[Path, Path]
) -> None:
    good, _ = two_runs
    with open(good / "metrics.jsonl", "a") as f:
        f.write(f'{{"step": {2**63}, "loss": 1}}\n')
        f.write(f'{{"step": 6, "loss": 1{"0" * 400}}}\n')
        f.write(f'{{"step": 7, "loss": {DEEP}}}\n')
        f.write('{"step": 8, "loss": 0.5}\n')
    results = _every_reader(git_project, xp, good)
    report = results[3]
    assert report.returncode == 0 and "skipped 3 line(s)" in report.stderr
    proc, url = start_ui(git_project)
    try:
        base = url.split("?")[0].rstrip("/")
        series = httpx.get(f"{base}/api/runs/{good.name}/metrics/loss", headers=AUTH, timeout=60)
        assert series.status_code == 200 and series.json()["x"][-1] == 8
    finally:
        stop(proc)
