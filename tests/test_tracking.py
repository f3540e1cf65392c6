from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from xpkit.errors import RunError
from xpkit.store import rundir as rd
from xpkit.store.create import NewRun, Provenance, create_run
from xpkit.tracking import Run


@pytest.fixture
def run_dir(tmp_path: Path) -> rd.RunDir:
    new = NewRun(expid="abc123", slug="t", command="x", argv=["x"], params={"lr": 0.1})
    return create_run(tmp_path / "runs", new, Provenance(tmp_path, None, {}))


def metric_lines(run_dir: rd.RunDir) -> list[dict[str, object]]:
    return [json.loads(line) for line in run_dir.file(rd.METRICS).read_text().splitlines()]


def test_log_flush_and_summary(run_dir: rd.RunDir) -> None:
    run = Run(run_dir, owned=False)
    assert run.config == {"lr": 0.1}
    run.log({"loss": 0.5, "acc": 0.8}, step=10)
    run.log({"loss": 0.25})  # step 11
    run.summary["best_acc"] = 0.93
    run.flush()
    lines = metric_lines(run_dir)
    assert [(line["step"], line["loss"]) for line in lines] == [(10, 0.5), (11, 0.25)]
    assert all(isinstance(line["time"], float) for line in lines)
    summary = json.loads(run_dir.file(rd.SUMMARY_JSON).read_text())
    assert summary == {"loss": 0.25, "acc": 0.8, "best_acc": 0.93}
    run.finish()
    with pytest.raises(RunError, match="finished"):
        run.log({"loss": 1.0})


def test_explicit_summary_wins_over_last_value(run_dir: rd.RunDir) -> None:
    with Run(run_dir, owned=False) as run:
        run.summary["loss"] = 0.01
        run.log({"loss": 0.5})
    assert json.loads(run_dir.file(rd.SUMMARY_JSON).read_text())["loss"] == 0.01


def test_special_values_stay_valid_json(run_dir: rd.RunDir) -> None:
    class Scalar:  # a numpy/torch-like scalar
        def __float__(self) -> float:
            return 2.5

    with Run(run_dir, owned=False) as run:
        run.log({"nan": math.nan, "inf": math.inf, "flag": True, "name": 'a"b', "t": Scalar()})
    line = metric_lines(run_dir)[0]
    assert math.isnan(line["nan"]) and line["inf"] == math.inf  # type: ignore[arg-type]
    assert line["flag"] is True and line["name"] == 'a"b' and line["t"] == 2.5


def test_bad_metric_value_names_the_key(run_dir: rd.RunDir) -> None:
    run = Run(run_dir, owned=False)
    with pytest.raises(RunError, match="metric 'weights' has a list value"):
        run.log({"weights": [1, 2]})
    run.finish()


def test_set_config_persists(run_dir: rd.RunDir) -> None:
    run = Run(run_dir, owned=False)
    run.set_config({"depth": 18})
    run.finish()
    assert json.loads(run_dir.file(rd.CONFIG_JSON).read_text()) == {"lr": 0.1, "depth": 18}


def test_metrics_are_flushed_within_the_interval(run_dir: rd.RunDir) -> None:
    """A log call that is not followed by another still reaches the disk in ~1 s."""
    import time

    run = Run(run_dir, owned=False)
    run.log({"loss": 1.0})
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not run_dir.file(rd.METRICS).read_text():
        time.sleep(0.05)
    assert metric_lines(run_dir) and metric_lines(run_dir)[0]["loss"] == 1.0
    run.finish()


def test_standalone_run_records_everything(git_project: Path) -> None:
    """`python train.py` without xp run: a run is created with snapshot and capture."""
    proc = subprocess.run(
        [sys.executable, "train.py", "--lr", "0.5"],
        cwd=git_project, capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_path,) = (git_project / "runs").glob("*_001_train")
    run = json.loads((run_path / rd.RUN_JSON).read_text())
    assert run["status"] == "finished"
    assert run["pid"] and run["duration"] is not None
    assert uuid.UUID(hex=run["id"]).version == 4 and len(run["id"]) == 32  # XP_RUN_ID
    assert json.loads((run_path / rd.GIT_JSON).read_text())["branch"] == "main"
    assert json.loads((run_path / rd.CONFIG_JSON).read_text())["lr"] == 0.5
    assert len(metric_lines(rd.RunDir(run_path))) == 5
    assert "done 0.5 0" in (run_path / rd.OUTPUT_LOG).read_text()


def test_a_standalone_run_says_what_it_kept_out_as_xp_run_does(git_project: Path) -> None:
    (git_project / ".env").write_text("API_KEY=abc\n")
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=git_project, capture_output=True, text=True,
        env=os.environ.copy(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "xp: warning: kept out of the snapshot, its diff and bundle because they look " \
        "like secrets: .env;" in proc.stderr  # fmt: skip
    assert "UserWarning" not in proc.stderr and "abc" not in proc.stderr


def test_standalone_run_that_raises_is_failed(git_project: Path) -> None:
    (git_project / "boom.py").write_text(
        "import xpkit as xp\nrun = xp.init()\nrun.log({'x': 1})\nraise SystemError('boom')\n"
    )
    proc = subprocess.run([sys.executable, "boom.py"], cwd=git_project, capture_output=True)
    assert proc.returncode == 1
    (run_path,) = (git_project / "runs").glob("*_001_boom")
    assert json.loads((run_path / rd.RUN_JSON).read_text())["status"] == "failed"
    assert metric_lines(rd.RunDir(run_path))[0]["x"] == 1


def test_metric_names_are_escaped_and_reserved_names_refused(run_dir: rd.RunDir) -> None:
    run = Run(run_dir, owned=False)
    run.log({'50% "quantile"': 1.5, "n": 3})
    with pytest.raises(RunError, match="'step' is reserved"):
        run.log({"step": 1.0})
    with pytest.raises(RunError, match="step must be an int"):
        run.log({"x": 1.0}, step="3")  # type: ignore[arg-type]
    run.finish()
    assert metric_lines(run_dir)[0]['50% "quantile"'] == 1.5


def test_summary_keeps_the_latest_value_across_key_sets(run_dir: rd.RunDir) -> None:
    run = Run(run_dir, owned=False)
    run.log({"loss": 3.0, "acc": 0.1})
    run.log({"loss": 2.0})
    run.log({"loss": 1.0, "acc": 0.2})
    run.log({"loss": 0.5})
    run.finish()
    assert json.loads(run_dir.file(rd.SUMMARY_JSON).read_text()) == {"loss": 0.5, "acc": 0.2}


def test_standalone_outside_git_says_how_to_opt_out(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("import xpkit as xp\nxp.init()\n")
    proc = subprocess.run([sys.executable, "t.py"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "not inside a git repository" in proc.stderr and "no_git=True" in proc.stderr
    ok = tmp_path / "ok.py"
    ok.write_text("import xpkit as xp\nrun = xp.init(no_git=True)\nrun.log({'a': 1})\n")
    assert subprocess.run([sys.executable, "ok.py"], cwd=tmp_path).returncode == 0
    (run_path,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert json.loads((run_path / rd.RUN_JSON).read_text())["status"] == "finished"


def test_log_refuses_what_readers_cannot_take(run_dir: rd.RunDir) -> None:
    """A step outside int64 or an int no float can hold would be skipped by every reader:
    refused at the call instead, and nothing of it is written."""
    run = Run(run_dir, owned=False)
    for step in (2**63, -(2**63) - 1):
        with pytest.raises(RunError, match="step must be an int between"):
            run.log({"loss": 1.0}, step=step)
    with pytest.raises(RunError, match="'big' is an int no float can hold"):
        run.log({"big": 10**400}, step=1)
    run.log({"fine": 10**300, "edge": 2**63 - 1}, step=2**63 - 1)
    run.flush()
    assert [line["step"] for line in metric_lines(run_dir)] == [2**63 - 1]
    run.finish()


def test_many_values_are_checked_like_one(run_dir: rd.RunDir) -> None:
    """More than 8 values take a check done in C: every kind the one-value path converts
    or refuses is converted or refused there too, in the position it was logged."""

    class Scalar:  # a numpy/torch-like scalar
        def __float__(self) -> float:
            return 2.5

    base = {f"m{k}": float(k) for k in range(12)}
    run = Run(run_dir, owned=False)
    run.log(base, step=0)
    for step, (name, value) in enumerate(
        [("m3", True), ("m4", math.nan), ("m5", Scalar()), ("m6", 7), ("m7", 1e308)], start=1
    ):
        run.log({**base, name: value}, step=step)
    run.log({**base, "m8": 1e308, "m9": 1e308}, step=6)  # a sum that overflows: still plain
    with pytest.raises(RunError, match="'m2' is an int no float can hold"):
        run.log({**base, "m2": 10**400}, step=7)
    with pytest.raises(RunError, match="metric 'm1' has a list value"):
        run.log({**base, "m1": [1.0]}, step=7)
    run.finish()
    lines = metric_lines(run_dir)
    assert [line["step"] for line in lines] == list(range(7))
    assert lines[0]["m11"] == 11.0 and lines[1]["m3"] is True and math.isnan(lines[2]["m4"])
    assert lines[3]["m5"] == 2.5 and lines[4]["m6"] == 7 and lines[5]["m7"] == 1e308
    assert lines[6]["m8"] == lines[6]["m9"] == 1e308


def test_one_metric_is_checked_like_many(run_dir: rd.RunDir) -> None:
    """`run.log({name: value})` takes a path of its own: it converts and refuses what the
    general path does, and switches between sets of metrics in either direction."""

    class Scalar:  # a numpy/torch-like scalar
        def __float__(self) -> float:
            return 2.5

    run = Run(run_dir, owned=False)
    for step, value in enumerate([1.5, True, math.nan, Scalar(), 7, 2**60, "best"]):
        run.log({"v": value}, step=step)
    run.log({"a": 1.0, "b": 2.0}, step=7)
    run.log({"a": 3.0}, step=8)  # one of the names of the set before: a set of its own
    with pytest.raises(RunError, match="'big' is an int no float can hold"):
        run.log({"big": 10**400}, step=9)
    with pytest.raises(RunError, match="'step' is reserved"):
        run.log({"step": 1.0}, step=9)
    with pytest.raises(RunError, match="metric names must be strings"):
        run.log({None: 1.0}, step=9)  # type: ignore[dict-item]
    with pytest.raises(RunError, match="metric 'w' has a list value"):
        run.log({"w": [1.0]}, step=9)
    run.finish()
    with pytest.raises(RunError, match="finished"):
        run.log({"v": 1.0})
    lines = metric_lines(run_dir)
    assert [line["step"] for line in lines] == list(range(9))
    values = [line.get("v") for line in lines[:7]]
    assert values[0] == 1.5 and values[1] is True and math.isnan(values[2])  # type: ignore[arg-type]
    assert values[3:] == [2.5, 7, 2**60, "best"]
    assert lines[7] | {"time": 0} == {"step": 7, "time": 0, "a": 1.0, "b": 2.0}
    assert lines[8]["a"] == 3.0 and "b" not in lines[8]
    assert json.loads(run_dir.file(rd.SUMMARY_JSON).read_text())["a"] == 3.0


def test_values_read_back_as_logged(run_dir: rd.RunDir) -> None:
    """Lines are written with 17 significant digits: every float reads back as the very
    same float, ints a float cannot hold exactly keep every digit."""
    import random

    rng = random.Random(7)
    floats = [rng.uniform(-1e6, 1e6) for _ in range(200)] + [0.1, 1 / 3, 5e-324, -0.0, 2.0]
    ints = [2**53, -(2**53), 2**53 + 1, 2**63 - 1, -(10**20) - 1]
    with Run(run_dir, owned=False) as run:
        for step, value in enumerate(floats + ints):
            run.log({"one": value}, step=step)
        run.log({f"m{k}": value for k, value in enumerate(floats)}, step=len(floats + ints))
    lines = metric_lines(run_dir)
    assert [line["one"] for line in lines[:-1]] == floats + ints
    assert [type(line["one"]) for line in lines[len(floats) : -1]] == [int] * len(ints)
    assert list(lines[-1].values())[2:] == floats


def test_a_fresh_run_keeps_negative_steps(run_dir: rd.RunDir) -> None:
    with Run(run_dir, owned=False) as run:
        run.log({"loss": 1.5}, step=-3)
        run.log({"loss": 1.0})  # after -3
        run.log({"loss": 0.5}, step=-(2**63))
    assert [line["step"] for line in metric_lines(run_dir)] == [-3, -2, -(2**63)]


def test_a_later_attempt_keeps_the_first_values_of_its_steps(
    run_dir: rd.RunDir, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A resumed program that starts again from an older checkpoint logs steps the first
    attempt logged: those keep their first values (one warning), the default step goes
    on after the last one written, and a step below every earlier one is no exception."""
    with Run(run_dir, owned=False) as run:
        for step in range(-2, 5):
            run.log({"loss": float(step)}, step=step)
    monkeypatch.setenv("XP_ATTEMPT", "2")
    with Run(run_dir, owned=False) as run:
        run.log({"loss": 100.0})  # step 5
        for step in (3, 4, -7):
            run.log({"loss": 100.0 + step}, step=step)
        run.log({"loss": 200.0}, step=6)
    lines = metric_lines(run_dir)
    assert [(line["step"], line["loss"]) for line in lines] == [
        *((step, float(step)) for step in range(-2, 5)),
        (5, 100.0),
        (6, 200.0),
    ]
    assert capfd.readouterr().err.count("keep their first values") == 1


def test_sets_of_metrics_interleave_in_step_order(run_dir: rd.RunDir) -> None:
    """Rows are kept per set of metric names and formatted in bulk at the flush: the lines
    still come out in step order, a converted value keeps its place among its set's
    lines, and the summary holds the value logged last."""
    run = Run(run_dir, owned=False)
    for step in range(30):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
        if step % 10 == 9:
            run.log({"val_loss": 0.5 * step, "loss": float(step)}, step=step)
        if step == 15:
            run.log({"loss": math.inf}, step=step)
    run.flush()
    lines = metric_lines(run_dir)
    steps = [line["step"] for line in lines]
    assert steps == sorted(steps) and len(lines) == 30 + 3 + 1
    assert [line["val_loss"] for line in lines if "val_loss" in line] == [4.5, 9.5, 14.5]
    assert [line["loss"] for line in lines if line["step"] == 15] == [1.0 / 16, math.inf]
    assert lines[-1] == {"step": 29, "time": lines[-1]["time"], "val_loss": 14.5, "loss": 29.0}
    summary = json.loads(run_dir.file(rd.SUMMARY_JSON).read_text())
    assert summary == {"loss": 29.0, "val_loss": 14.5}
    run.finish()


def test_threads_logging_at_once_lose_nothing(run_dir: rd.RunDir) -> None:
    """Four threads log into two sets of metrics while the flush takes rows: every row
    is written once, whole."""
    import threading

    run = Run(run_dir, owned=False)

    def work(thread: int) -> None:
        for i in range(20_000):
            names = {"a": float(i), "t": thread} if thread % 2 else {"b": float(i), "t": thread}
            run.log(names, step=i)
            if i % 5_000 == 0:
                run.flush()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.finish()
    lines = metric_lines(run_dir)
    assert len(lines) == 80_000
    for thread in range(4):
        mine = [line for line in lines if line["t"] == thread]
        name = "a" if thread % 2 else "b"
        assert sorted(line[name] for line in mine) == [float(i) for i in range(20_000)]
