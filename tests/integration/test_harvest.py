"""Metrics of unmodified scripts: stdout patterns and TensorBoard event files."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, git
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration

PRINTER = textwrap.dedent(
    """\
    import sys, time
    for step in range(3):
        print(f"step {step} | loss {1.0 / (step + 1):.4f} | acc 0.{step}", flush=True)
    print("epoch done\\rstep 7 | loss 0.1250 | acc 0.9", flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print("the end", flush=True)
    """
)
TB_WRITER = textwrap.dedent(
    """\
    import time
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    writer = EventFileWriter("tb_logs")
    for step in range(4):
        value = Summary.Value(tag="train/loss", simple_value=1.0 / (step + 1))
        writer.add_event(Event(step=step * 10, wall_time=time.time(), summary=Summary(value=[value])))
    writer.close()
    """
)


def experiment(project: Path, name: str, body: str) -> str:
    path = project / "experiments" / "toy" / name
    path.write_text(textwrap.dedent(body))
    git(project, "add", "-A")
    git(project, "commit", "-qm", name)
    return str(path.relative_to(project))


def lines(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / rd.METRICS).read_text().splitlines()]


def only_run(runs_root: Path) -> Path:
    (run,) = [p for p in runs_root.iterdir() if not p.name.startswith(".")]
    return run


def test_stdout_patterns_become_metrics(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "printer.py").write_text(PRINTER)
    exp = experiment(git_project, "05_stdout.xp.toml", r"""
        id = "out555"
        command = "python printer.py"
        [[metrics_from_stdout]]
        pattern = 'step (?P<step>\d+) \| loss (?P<loss>[0-9.e+-]+) \| acc (?P<acc>[0-9.]+)'
        [[metrics_from_stdout]]
        pattern = 'epoch (?P<epoch_marker>done)'
        """)  # fmt: skip
    result = xp("run", exp, cwd=git_project)
    assert result.returncode == 0, result.output
    run = only_run(runs_root)
    points = [(p["step"], p["loss"], p["acc"]) for p in lines(run)]
    assert points == [(0, 1.0, 0.0), (1, 0.5, 0.1), (2, 0.3333, 0.2), (7, 0.125, 0.9)]
    assert json.loads((run / rd.SUMMARY_JSON).read_text()) == {"loss": 0.125, "acc": 0.9}
    listing = xp("ls", "--columns", "name,loss,acc", cwd=git_project)
    assert "0.125" in listing.stdout and "0.9" in listing.stdout


def test_stdout_metrics_arrive_while_the_run_goes_on(git_project: Path, runs_root: Path) -> None:
    (git_project / "printer.py").write_text(PRINTER)
    exp = experiment(git_project, "06_live.xp.toml", r"""
        id = "liv666"
        command = "python printer.py 20"
        [[metrics_from_stdout]]
        pattern = 'loss (?P<loss>[0-9.]+)'
        """)  # fmt: skip
    env = {**os.environ, "XP_HEARTBEAT_INTERVAL": "0.5"}
    proc = subprocess.Popen([*XP, "run", exp], cwd=git_project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        seen: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(seen) < 4:
            time.sleep(0.2)
            runs = (
                [p for p in runs_root.iterdir() if not p.name.startswith(".")]
                if runs_root.exists()
                else []
            )
            seen = lines(runs[0]) if runs else []
        assert len(seen) == 4 and proc.poll() is None  # harvested before the end
    finally:
        proc.terminate()
        proc.wait()


def test_tensorboard_event_files_become_metrics(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "tb.py").write_text(TB_WRITER)
    (git_project / ".gitignore").write_text("/runs/\n/tb_logs/\n")
    exp = experiment(git_project, "07_tb.xp.toml", """
        id = "tbs777"
        command = "python tb.py"
        metrics_from = ["tensorboard"]
        """)  # fmt: skip
    assert xp("run", exp, cwd=git_project).returncode == 0
    assert xp("run", exp, cwd=git_project).returncode == 0  # the same worktree again
    for run in sorted(p for p in runs_root.iterdir() if not p.name.startswith(".")):
        points = [(p["step"], p["train/loss"]) for p in lines(run)]
        assert points == [(0, 1.0), (10, 0.5), (20, pytest.approx(1 / 3)), (30, 0.25)]
        assert json.loads((run / rd.SUMMARY_JSON).read_text()) == {"train/loss": 0.25}
    report = xp("report", exp, cwd=git_project)
    assert report.returncode == 0
    assert (git_project / "experiments" / "toy" / "07_tb.assets" / "curve-train_loss.png").exists()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "[[metrics_from_stdout]]\npattern = 'loss (?P<loss>[0-9.]+'\n",
            "not a valid regular expression",
        ),
        (
            "[[metrics_from_stdout]]\npattern = 'loss ([0-9.]+)'\n",
            "has no named group for a metric",
        ),
        ("[[metrics_from_stdout]]\nregex = 'x'\n", "needs pattern = '...'"),
        (
            'metrics_from = ["wandb"]\n',
            "metrics_from[0]: unknown source 'wandb'; valid sources: "
            "hf-trainer-state, keras-csv, lightning-csv, tensorboard",
        ),
        ('metrics_from = ["lightning_csv"]\n', "did you mean 'lightning-csv'?"),
        ('metrics_from = "tensorboard"\n', "'metrics_from' must be a list of 'tensorboard', "),
    ],
    ids=["bad-regex", "no-named-group", "no-pattern", "unknown-source", "typo", "not-a-list"],
)
def test_bad_metric_sources(
    git_project: Path, xp: Callable[..., Result], body: str, fragment: str
) -> None:
    path = git_project / "experiments" / "toy" / "08_bad.xp.toml"
    path.write_text('id = "bad888"\ncommand = "true"\n' + body)
    result = xp("run", "experiments/toy/08_bad.xp.toml", cwd=git_project)
    assert result.returncode == 2 and "Traceback" not in result.output
    assert fragment in result.stderr and "08_bad.xp.toml" in result.stderr


def test_output_without_line_ends_is_read_in_linear_time(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    """200 MB without a newline (quadratic before: 20 MB took 24 s, 500 MB never ended
    while the program blocked on its pipe), then metric lines: all harvested, and
    nothing matched inside the overlong line."""
    (git_project / "dump.py").write_text(textwrap.dedent("""\
        import sys
        out = sys.stdout.buffer
        out.write(b"step 99 | loss 9.0 | acc 0.9")  # the head of an overlong line
        block = b"x" * (1 << 20)
        for _ in range(200):
            out.write(block)
        out.write(b"\\nstep 1 | loss 0.5 | acc 0.1\\nstep 2 | loss 0.25 | acc 0.2\\n")
        """))  # fmt: skip
    exp = experiment(git_project, "06_dump.xp.toml", r"""
        id = "dmp666"
        command = "python dump.py"
        [[metrics_from_stdout]]
        pattern = 'step (?P<step>\d+) \| loss (?P<loss>[0-9.e+-]+) \| acc (?P<acc>[0-9.]+)'
        """)  # fmt: skip
    result = xp("run", exp, cwd=git_project, timeout=300)
    assert result.returncode == 0, result.output[-2000:]
    run = only_run(runs_root)
    assert [(p["step"], p["loss"]) for p in lines(run)] == [(1, 0.5), (2, 0.25)]
    assert (run / rd.OUTPUT_LOG).stat().st_size > 200 * (1 << 20)
