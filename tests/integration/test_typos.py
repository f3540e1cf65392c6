"""A name a user types that does not exist is an error naming it and what is close,
exit 2, and no run created: never a plausible wrong answer."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import Result, git, runs_of
from ui.conftest import AUTH, start_ui, stop

pytestmark = pytest.mark.integration
EXP = "experiments/toy/01_base.xp.toml"


@pytest.fixture
def swept(git_project: Path, xp: Callable[..., Result]) -> Path:
    assert xp("run", EXP, cwd=git_project).returncode == 0  # params lr, seed; metrics loss, acc
    return git_project


TYPOS = [
    (["run", EXP, "--param", "sed=3"], ["--param sed", "did you mean 'seed'"]),
    (["run", EXP, "--param", "zzz=3"], ["no parameter 'zzz'", "valid parameters: lr, seed"]),
    (["run", "experiments/toy/01_base"], ["did you mean experiments/toy/01_base.xp.toml"]),
    (["submit", "experiments/toy/01_base"], ["did you mean experiments/toy/01_base.xp.toml"]),
    (["run", "--", "pythn", "train.py"], ["command not found: 'pythn'", "no run was created"]),
    (["ls", "--where", "lrr>0.1"], ["'lrr'", "did you mean 'lr'"]),
    (["ls", "--where", "lr>>"], ["'lr>>' is not a condition"]),
    (["ls", "--where", "lr="], ["'lr=' is not a condition"]),
    (["ls", "--sort", "acx"], ["--sort 'acx'", "did you mean 'acc'"]),
    (["ls", "--columns", "name,tst_acc"], ["--columns 'tst_acc'"]),
    (["ls", "--where", "summary.lr>0"], ["no summary 'lr'"]),
    (["report", EXP, "--metric", "los"], ["--metric 'los'", "did you mean 'loss'"]),
    (["report", EXP, "--sort", "acx"], ["--sort 'acx'", "did you mean 'acc'"]),
    (["report", EXP, "--group-by", "sed"], ["--group-by 'sed'", "did you mean 'seed'"]),
    (["show", "abc123_01"], ["no run matches 'abc123_01'", "Did you mean abc123_001_base-lr0.1"]),
    (["trash", "restore", "abc123/9"], ["no run matches 'abc123/9'"]),
]


@pytest.mark.parametrize(
    ("args", "fragments"),
    TYPOS,
    ids=["param", "param-none-close", "file-without-suffix", "submit-file-without-suffix",
         "program", "where-key", "where-value", "where-empty", "sort", "columns",
         "namespace", "report-metric", "report-sort", "report-group-by", "run-ref",
         "trash-ref"],
)  # fmt: skip
def test_a_typo_is_an_error_with_the_closest_names(
    swept: Path, xp: Callable[..., Result], args: list[str], fragments: list[str]
) -> None:
    before = [r.name for r in runs_of(swept / "runs")]
    result = xp(*args, cwd=swept)
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert [r.name for r in runs_of(swept / "runs")] == before  # no run created


def test_the_same_names_work_when_spelled_right(swept: Path, xp: Callable[..., Result]) -> None:
    listing = xp("ls", "--where", "lr<0.05", "--columns", "name,lr,acc", "--sort", "acc",
                 "--json", cwd=swept)  # fmt: skip
    assert listing.returncode == 0, listing.output
    assert [row["name"] for row in json.loads(listing.stdout)] == ["abc123_002_base-lr0.01"]
    assert xp("rm", "abc123/2", "--yes", cwd=swept).returncode == 0
    restored = xp("trash", "restore", "abc123/2", cwd=swept)
    assert restored.returncode == 0 and "restored abc123_002_base-lr0.01" in restored.stdout


def test_a_name_both_a_param_and_a_metric_is_spelled_out(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """A param `lr` and a metric `lr` (the scheduler's current rate) are two columns
    and two names: a bare `lr` is ambiguous."""
    (git_project / "sched.py").write_text(textwrap.dedent("""\
        import sys, xpkit as xp
        run = xp.init()
        run.log({"lr": float(sys.argv[1]) / 10})
        """))  # fmt: skip
    (git_project / "experiments" / "toy" / "03_sched.xp.toml").write_text(
        'id = "sch333"\ncommand = "python sched.py {lr}"\n[grid]\nlr = [0.1, 0.2]\n'
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "sched")
    assert xp("run", "experiments/toy/03_sched.xp.toml", cwd=git_project).returncode == 0
    table = xp("ls", cwd=git_project)
    header = table.stdout.splitlines()[0].split()
    assert "params.lr" in header and "summary.lr" in header and "lr" not in header
    ambiguous = xp("ls", "--where", "lr<0.015", cwd=git_project)
    assert ambiguous.returncode == 2
    assert "params.lr" in ambiguous.stderr and "summary.lr" in ambiguous.stderr
    by_param = xp("ls", "--where", "params.lr<0.15", "--jsonl", cwd=git_project)
    by_metric = xp("ls", "--where", "summary.lr<0.015", "--jsonl", cwd=git_project)
    assert [json.loads(line)["params"]["lr"] for line in by_param.stdout.splitlines()] == [0.1]
    assert [json.loads(line)["params"]["lr"] for line in by_metric.stdout.splitlines()] == [0.1]


def test_slugs_keep_numbers_readable_and_distinct(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "experiments" / "toy" / "04_l2.xp.toml").write_text(
        'id = "l2l2l2"\ncommand = "python -c pass"\n'
        '[grid]\nl2 = [0.0, 0.5]\nlr = [1.0]\nopt = ["sgd", "adam"]\n'
    )
    result = xp("run", "experiments/toy/04_l2.xp.toml", "--dry-run", cwd=git_project)
    assert result.returncode == 0, result.output
    names = [line.split(":")[0].strip() for line in result.stdout.splitlines()[1:]]
    assert names == [f"l2l2l2_NNN_l2-{slug}" for slug in (
        "l2_0.0-opt_sgd", "l2_0.0-opt_adam", "l2_0.5-opt_sgd", "l2_0.5-opt_adam")]  # fmt: skip


def test_the_dashboard_answers_a_bad_filter_with_400(swept: Path) -> None:
    proc, url = start_ui(swept)
    try:
        base = url.split("?")[0].rstrip("/")
        for query, fragment in (("where=lr>>", "is not a condition"),
                                ("where=lrr>0.1", "did you mean"),
                                ("sort=acx", "did you mean")):  # fmt: skip
            page = httpx.get(f"{base}/?{query}", headers=AUTH, timeout=30)
            assert page.status_code == 400 and fragment in page.text, query
        assert httpx.get(f"{base}/?where=lr<0.05", headers=AUTH, timeout=30).status_code == 200
    finally:
        stop(proc)
