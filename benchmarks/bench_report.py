"""Report scenario for `make bench`: `xp report` over 1,000 runs with 1,000 logged points
each (20 configurations x 50 seeds), curves included; cold (no curve cache) and warm; and
over 10,000 runs of 100 points (20 configurations x 500 seeds), warm."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

RUNS, POINTS = 1000, 1000
LARGE_RUNS, LARGE_POINTS = 10_000, 100


def make_experiment(project: Path, count: int = RUNS, points: int = POINTS) -> str:
    runs = project / "runs"
    runs.mkdir(parents=True)
    (project / "xp.toml").write_text('runs = "runs"\n')
    exp_dir = project / "experiments"
    exp_dir.mkdir()
    (exp_dir / "01_big.xp.toml").write_text(
        'id = "bigrep"\nname = "big"\n'
        'command = "python train.py --lr {lr} --wd {wd} --seed {seed}"\n'
        "[grid]\nlr = [0.1, 0.03, 0.01, 0.003, 0.001]\nwd = [0.0, 0.01, 0.1, 1.0]\n"
        "seed = [" + ", ".join(str(s) for s in range(count // 20)) + "]\n"
    )
    stamp = time.time() - 3600
    for i in range(count):
        lr = [0.1, 0.03, 0.01, 0.003, 0.001][i % 5]
        wd = [0.0, 0.01, 0.1, 1.0][(i // 5) % 4]
        seed = i // 20
        name = f"bigrep_{i + 1:05d}_big-lr{lr}-wd{wd}-seed{seed}"
        path = runs / name
        path.mkdir()
        lines = [
            f'{{"step": {s}, "time": {stamp + s:.3f}, "loss": {1.0 / (1 + s * lr):.6f}, '
            f'"acc": {min(0.99, s * lr / 10 + seed * 1e-4):.6f}}}\n'
            for s in range(points)
        ]
        (path / "metrics.jsonl").write_text("".join(lines))
        run = {"name": name, "experiment_id": "bigrep", "trial": i + 1, "status": "finished",
               "params": {"lr": lr, "wd": wd, "seed": seed}, "created": stamp + i,
               "duration": 60.0, "host": "bench", "command": "python train.py",
               "snapshot": "f" * 40, "commit": "e" * 40}  # fmt: skip
        (path / "run.json").write_text(json.dumps(run))
        last = json.loads(lines[-1])
        (path / "summary.json").write_text(json.dumps({"loss": last["loss"], "acc": last["acc"]}))
        os.utime(path, (stamp, stamp))
    return "experiments/01_big.xp.toml"


def _timed_report(project: Path, exp: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(["xp", "report", exp], cwd=project, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def scenario_report(work: Path, reps: int) -> dict[str, Any]:
    project = work / "report"
    exp = make_experiment(project)
    cache = work / "report-cache"
    env = {**os.environ, "XP_CACHE_DIR": str(cache)}
    cold, warm = [], []
    for _ in range(reps):
        shutil.rmtree(cache, ignore_errors=True)
        cold.append(_timed_report(project, exp, env))
        warm.append(_timed_report(project, exp, env))
    report = (project / "experiments" / "01_big.md").read_text()
    assert "| 0.1 | 0 |" in report, report[:2000]
    large = work / "report-large"
    exp = make_experiment(large, LARGE_RUNS, LARGE_POINTS)
    env = {**os.environ, "XP_CACHE_DIR": str(work / "report-large-cache")}
    _timed_report(large, exp, env)
    large_warm = [_timed_report(large, exp, env) for _ in range(reps)]
    return {"cold_s": statistics.median(cold), "warm_s": statistics.median(warm),
            "runs": RUNS, "points": POINTS, "large_runs": LARGE_RUNS,
            "large_points": LARGE_POINTS,
            "large_warm_s": statistics.median(large_warm)}  # fmt: skip
