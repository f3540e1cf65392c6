"""`xp top`'s model and plain view over a runs root written by hand: what each table says,
and that a refresh reads only what changed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from xpkit.errors import QueueError
from xpkit.queue import files
from xpkit.queue.priority import set_priority
from xpkit.store.rundir import RunDir
from xpkit.tui.model import TopModel, sparkline
from xpkit.tui.plain import render
from xpkit.tui.screens import diff_summary

RUNNING = "abc123_001_train-lr0.1"


def make_run(runs: Path, name: str, status: str, **extra: object) -> RunDir:
    path = runs / name
    path.mkdir(parents=True)
    info = {"name": name, "experiment_id": name[:6], "trial": int(name[7:10]), "status": status,
            "command": "python train.py", "created": time.time() - 60, "priority": 0,
            "gpus_requested": 1, "labels": [], **extra}  # fmt: skip
    (path / "run.json").write_text(json.dumps(info))
    (path / "metrics.jsonl").write_text("")
    return RunDir(path)


def write_worker(runs: Path, running: dict[str, list[int]], gpus: list[dict[str, object]]) -> None:
    folder = files.workers_dir(runs)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"host": "gpu1", "pid": 4321, "labels": [], "gpus": 2, "max_jobs": 2,
              "running": running, "host_view": {"source": "nvml", "gpus": gpus}}  # fmt: skip
    (folder / "gpu1_4321.json").write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root, RUNNING, "running", started=time.time() - 90, host="gpu1", gpus=[0]).beat()
    for i in range(2, 5):
        queued = make_run(root, f"abc123_00{i}_train-lr0.0{i}", "queued")
        files.enqueue_from_run(root, queued, queued.read_run())
    write_worker(root, {RUNNING: [0]}, [
        {"index": 0, "name": "H100", "util": 97, "temp": 71, "mem_used": 60000,
         "mem_total": 81920, "runs": [RUNNING], "processes": [
             {"pid": 900, "mib": 60000, "user": "ana", "command": "python train.py",
              "run": RUNNING}]},
        {"index": 1, "name": "H100", "util": 40, "temp": 55, "mem_used": 20000,
         "mem_total": 81920, "runs": [], "processes": [
             {"pid": 4242, "mib": 20000, "user": "bob", "command": "python mine.py --big"}]},
    ])  # fmt: skip
    return root


def test_gpus_queue_and_runs_as_a_user_sees_them(runs: Path) -> None:
    model = TopModel(runs, metric="loss")
    with open(runs / RUNNING / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps({"step": s, "loss": 1.0 / (s + 1), "acc": s / 10}) + "\n"
                     for s in range(5))  # fmt: skip
    model.refresh()
    held, foreign = model.gpus
    assert held.holder == f"run {RUNNING}" and held.util == 97 and held.temp == 71
    assert foreign.holder == "bob pid 4242 python mine.py --big (20000 MiB)"
    assert [q.name for q in model.queue] == [f"abc123_00{i}_train-lr0.0{i}" for i in (2, 3, 4)]
    assert model.queue[0].why == "waiting for 1 free GPU"
    view = model.runs[RUNNING]
    assert view.latest == {"loss": 0.2, "acc": 0.4} and view.spark("loss") == "█▃▂▁▁"
    # Between two screens the run logs more: only the new bytes are read.
    offset = view.offset
    with open(runs / RUNNING / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 0.01}) + "\n" + '{"step": 6, "lo')  # a torn line
    model.refresh()
    assert view.latest["loss"] == 0.01 and view.offset > offset
    assert not (runs / RUNNING / "metrics.jsonl").read_bytes()[view.offset :].endswith(b"\n")


def test_ended_runs_are_listed_and_sweeps_grouped(runs: Path, tmp_path: Path) -> None:
    trial = make_run(runs, "swp001_001_search-x1.0", "finished", started=time.time() - 5,
                     ended=time.time(), search={"study": "swp001", "trial": 0})  # fmt: skip
    model = TopModel(runs)
    model.refresh(complete=True)  # the first look finds what ended before it
    assert model.recent == [trial.name] and model.sweeps["swp001"]["runs"] == [trial.name]
    RunDir(runs / RUNNING).update_run(status="finished", ended=time.time())
    write_worker(runs, {}, [])  # its worker no longer runs it
    model.refresh()
    assert model.recent[0] == RUNNING and model.runs[RUNNING].status == "finished"


@pytest.mark.parametrize("width", [80, 200])
def test_the_plain_screen_fits_its_width(runs: Path, width: int) -> None:
    model = TopModel(runs)
    model.refresh()
    text = render(model, width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert "GPUs" in text and "Queue (3 queued)" in text and "Runs" in text
    assert "bob pid 4242" in text and "waiting for 1 free GPU" in text
    assert RUNNING[:20] in text


def test_a_queued_run_gets_a_new_priority_through_the_queue(runs: Path) -> None:
    name = "abc123_003_train-lr0.03"
    run_dir = RunDir(runs / name)
    set_priority(runs, run_dir, 7)
    assert run_dir.read_run()["priority"] == 7 and not run_dir.file(".claim").exists()
    queued, _ = files.queued_runs(runs)
    assert queued[0].name == name and queued[0].priority == 7  # first in line now
    with pytest.raises(QueueError, match="only a queued run's priority can change"):
        set_priority(runs, RunDir(runs / RUNNING), 3)
    with pytest.raises(QueueError, match="out of range"):
        set_priority(runs, run_dir, 10**9)
    files.create_claim(run_dir, files.me("worker"))  # a worker took it meanwhile
    with pytest.raises(QueueError, match="just taken by a worker"):
        set_priority(runs, run_dir, 1)


def test_sparkline_and_diff_summary(tmp_path: Path) -> None:
    assert sparkline([1.0, 2.0, 3.0]) == "▁▄█" and sparkline([]) == ""
    assert sparkline([2.0, 2.0, float("nan")]) == "▁▁"
    diff = tmp_path / "git.diff"
    diff.write_text("diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n"
                    "-lr = 0.1\n+lr = 0.2\n+seed = 1\n")  # fmt: skip
    assert "train.py  +2 -1" in diff_summary(diff)
    assert "no git.diff" in diff_summary(tmp_path / "missing")


def test_a_dead_workers_gpus_are_not_shown(runs: Path) -> None:
    stale = time.time() - 3600
    path = files.workers_dir(runs) / "gpu1_4321.json"
    os.utime(path, (stale, stale))
    model = TopModel(runs)
    model.refresh()
    assert model.gpus == [] and model.queue[0].why.startswith("no worker is alive")
