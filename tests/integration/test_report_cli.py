"""`xp report` and `xp ls --sort/--columns` on real runs."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, git

pytestmark = pytest.mark.integration
EXP = "experiments/toy/03_seeds.xp.toml"


@pytest.fixture
def swept(git_project: Path, xp: Callable[..., Result]) -> Path:
    """An experiment of 2 learning rates x 2 seeds, run."""
    (git_project / EXP).write_text(textwrap.dedent("""\
        id = "rep123"
        name = "seeds"
        description = "Two learning rates, two seeds."
        command = "python train.py --lr {lr} --seed {seed}"
        [grid]
        lr = [0.1, 0.01]
        seed = [0, 1]
        """))  # fmt: skip
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "seeds")
    result = xp("run", EXP, cwd=git_project)
    assert result.returncode == 0, result.output
    return git_project


def test_report_is_written_beside_the_experiment(swept: Path, xp: Callable[..., Result]) -> None:
    result = xp("report", EXP, cwd=swept)
    assert result.returncode == 0, result.output
    report = swept / "experiments" / "toy" / "03_seeds.md"
    text = report.read_text()
    head = git(swept, "rev-parse", "HEAD").strip()[:12]
    for fragment in [
        "# seeds (`rep123`)", "Two learning rates, two seeds.",
        "- **Command:** `python train.py --lr {lr} --seed {seed}`",
        "- **Grid:** `lr` = 0.1, 0.01; `seed` = 0, 1", "- **Runs:** 4 finished",
        f"- **Code:** commit `{head}` (4 runs)",
        "(runs differing only in seed are repeats)",
        "| lr | n | acc | loss |",
        "| 0.1 | 2 | 0.9 ± 0 | 0.02 ± 0 |",  # a tie in acc: nothing bold; n in its column
        "| 0.01 | 2 | 0.9 ± 0 | **0.002 ± 0** |",
        "![loss](03_seeds.assets/curve-loss.png)",
        "| rep123_001_seeds-lr0.1-seed0 | finished | 0.1 | 0 | 0.9 | 0.02 |",
    ]:  # fmt: skip
        assert fragment in text, text
    assets = sorted(p.name for p in (swept / "experiments" / "toy" / "03_seeds.assets").iterdir())
    assert assets == ["curve-acc.png", "curve-loss.png"]
    before = {p: p.read_bytes() for p in report.parent.rglob("03_seeds*") if p.is_file()}
    again = xp("report", EXP, cwd=swept)
    assert "up to date" in again.stdout
    assert {p: p.read_bytes() for p in before} == before  # byte-identical
    assert xp("report", "--check", EXP, cwd=swept).returncode == 0


def test_check_detects_a_stale_report(swept: Path, xp: Callable[..., Result]) -> None:
    assert xp("report", EXP, cwd=swept).returncode == 0
    assert xp("run", EXP, "--param", "lr=0.5", "--param", "seed=0", cwd=swept).returncode == 0
    check = xp("report", "--all", "--check", cwd=swept)
    assert check.returncode == 1
    assert "stale: " in check.stdout and "03_seeds.md" in check.stdout
    assert "not up to date" in check.stderr


def test_options_metric_group_by_status_and_sort(swept: Path, xp: Callable[..., Result]) -> None:
    result = xp(
        "report", EXP, "--metric", "loss", "--group-by", "seed", "--sort", "loss", cwd=swept
    )
    assert result.returncode == 0
    text = (swept / "experiments" / "toy" / "03_seeds.md").read_text()
    assert "| seed | loss |" in text and "acc" not in text.split("## Curves")[0]
    assert sorted(
        p.name for p in (swept / "experiments" / "toy" / "03_seeds.assets").iterdir()
    ) == ["curve-loss.png"]  # the acc curve of the earlier rendering is gone


def test_template_replaces_the_default(swept: Path, xp: Callable[..., Result]) -> None:
    template = swept / "experiments" / "toy" / "03_seeds.md.j2"
    template.write_text(
        "# {{ experiment.name }}\n{% for g in groups %}- {{ g.label }}: {{ mean_std(g, 'acc') }}"
        "{% if is_best(g, 'loss') %} (best loss){% endif %}\n{% endfor %}![]({{ plot('loss') }})\n"
    )
    assert xp("report", EXP, cwd=swept).returncode == 0
    text = (swept / "experiments" / "toy" / "03_seeds.md").read_text()
    assert text == (
        "# seeds\n- lr=0.1: 0.9 ± 0 (n=2)\n- lr=0.01: 0.9 ± 0 (n=2) (best loss)\n"
        "![](03_seeds.assets/curve-loss.png)\n"
    )


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("line one\n{{ experiment.nmae }}\n", "03_seeds.md.j2:2: UndefinedError"),
        ("ok\n{% for x in runs %}\n", "03_seeds.md.j2:2: template syntax error"),
    ],
    ids=["undefined", "syntax"],
)
def test_template_errors_name_file_and_line(
    swept: Path, xp: Callable[..., Result], template: str, fragment: str
) -> None:
    (swept / "experiments" / "toy" / "03_seeds.md.j2").write_text(template)
    result = xp("report", EXP, cwd=swept)
    assert result.returncode == 2 and "Traceback" not in result.output
    assert fragment in result.stderr, result.stderr
    assert not (swept / "experiments" / "toy" / "03_seeds.md").exists()


def test_experiment_without_runs_says_so(git_project: Path, xp: Callable[..., Result]) -> None:
    result = xp("report", "experiments/toy/01_base.xp.toml", cwd=git_project)
    assert result.returncode == 0, result.output
    text = (git_project / "experiments" / "toy" / "01_base.md").read_text()
    assert "- **Runs:** none" in text and "No finished runs yet" in text


def test_missing_and_non_numeric_metrics_are_blank(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "odd.py").write_text(
        "import sys, xpkit as xp\nrun = xp.init()\n"
        "run.log({'acc': 0.5} if sys.argv[1] == 'a' else {'acc': 'high', 'other': 1.0})\n"
    )
    (git_project / "experiments" / "toy" / "04_odd.xp.toml").write_text(
        'id = "odd444"\ncommand = "python odd.py {v}"\n[grid]\nv = ["a", "b"]\n'
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "odd")
    assert xp("run", "experiments/toy/04_odd.xp.toml", cwd=git_project).returncode == 0
    result = xp("report", "experiments/toy/04_odd.xp.toml", cwd=git_project)
    assert result.returncode == 0, result.output
    text = (git_project / "experiments" / "toy" / "04_odd.md").read_text()
    assert "| a | 1 | **0.5** |  |" in text and "| b | 1 |  | **1** |" in text
    assert "| odd444_002_odd-v_b | finished | b |  | 1 |" in text


def test_experiment_file_outside_the_project(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    outside = tmp_path / "elsewhere.xp.toml"
    outside.write_text('id = "out999"\ncommand = "true"\n')
    result = xp("report", str(outside), cwd=git_project)
    assert result.returncode == 2 and "is outside the project" in result.stderr


def test_adhoc_report_of_runs_to_stdout(swept: Path, xp: Callable[..., Result]) -> None:
    result = xp("report", "rep123/1", "rep123/3", cwd=swept)
    assert result.returncode == 0, result.output
    assert "# 2 selected runs" in result.stdout and "rep123_003_seeds-lr0.01-seed0" in result.stdout
    assert "## Curves" not in result.stdout
    assert not (swept / "experiments" / "toy" / "03_seeds.md").exists()


def test_template_context_is_documented(git_project: Path, xp: Callable[..., Result]) -> None:
    result = xp("report", "--template-context", cwd=git_project)
    for name in ("runs", "groups", "varying", "metrics", "fmt(", "mean_std(", "best(", "plot("):
        assert name in result.stdout


def test_ls_sort_and_columns(swept: Path, xp: Callable[..., Result]) -> None:
    result = xp("ls", "--sort", "loss", "--columns", "name,lr,loss", cwd=swept)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "lr", "loss"]
    assert [line.split()[1] for line in lines[1:]] == ["0.01", "0.01", "0.1", "0.1"]
    by_lr = xp("ls", "--sort", "lr", "--json", cwd=swept)
    assert [row["params"]["lr"] for row in json.loads(by_lr.stdout)] == [
        0.01,
        0.01,
        0.1,
        0.1,
    ]


def test_counters_are_not_results_and_options_are_part_of_the_report(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """`epoch`, `step`-like counters are logged beside results but are no result: no
    column, no curve, never bold, unless asked for with --metric. The options a report
    was made with are recorded in it: `--check` (and a plain `xp report`) keep them."""
    (git_project / "count.py").write_text(textwrap.dedent("""\
        import sys, xpkit as xp
        run = xp.init()
        for epoch in range(3):
            run.log({"epoch": epoch, "global_step": epoch * 10, "loss": float(sys.argv[1]) ** epoch})
        """))  # fmt: skip
    exp = "experiments/toy/07_count.xp.toml"
    (git_project / exp).write_text(
        'id = "cnt777"\ncommand = "python count.py {base}"\n[grid]\nbase = [0.5, 0.001]\n'
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "counters")
    assert xp("run", exp, cwd=git_project).returncode == 0
    assert xp("report", exp, cwd=git_project).returncode == 0
    report = git_project / "experiments" / "toy" / "07_count.md"
    text = report.read_text()
    assert "| base | n | loss |" in text and "epoch |" not in text.split("## Runs")[0]
    assets = report.parent / "07_count.assets"
    assert sorted(p.name for p in assets.iterdir()) == ["curve-loss.png"]
    chosen = xp("report", exp, "--metric", "loss", "--metric", "epoch", cwd=git_project)
    assert chosen.returncode == 0 and "| base | n | loss | epoch |" in report.read_text()
    assert report.read_text().startswith('<!-- xp report options: {"metrics": ["loss", "epoch"]}')
    check = xp("report", "--all", "--check", cwd=git_project)
    assert "07_count" not in check.stdout, check.output  # made again the same way
    again = xp("report", exp, cwd=git_project)
    assert "up to date" in again.stdout


def test_curves_have_a_y_label_and_a_log_axis_over_decades() -> None:
    from array import array

    import numpy as np

    from xpkit.report.plots import _spans_decades, plot_png

    assert _spans_decades([np.array([1.0, 1e-4])]) and not _spans_decades([np.array([0.5, 0.9])])
    assert not _spans_decades([np.array([-1.0, 1e4])])  # not all positive: linear
    curve = (array("q", [0, 1, 2]), array("d", [1.0, 0.01, 1e-4]))
    png = plot_png("loss", [("a", [curve]), ("b", [curve])])
    assert png.startswith(b"\x89PNG")
