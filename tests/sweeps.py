"""What the sweep tests share: a tiny numpy objective with a known optimum, its
experiment file, and the checks every sweep must pass whatever happened to it."""

from __future__ import annotations

import json
import re
import textwrap
import threading
from pathlib import Path
from typing import Any

from conftest import Result, git

OPTIMUM = (2.0, -1.0)  # where `loss` is 0
# A learning curve that converges to (x-2)^2 + (y+1)^2: at every step its order between
# trials is the order of their final values, so a clearly worse curve is clearly worse.
QUAD_PY = textwrap.dedent(
    """\
    import argparse, time
    import numpy as np
    import xpkit as xp

    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=float)
    parser.add_argument("--y", type=float)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--pause", type=float)
    args = parser.parse_args()
    run = xp.init()
    target = float(np.square(np.array([args.x - 2.0, args.y + 1.0])).sum())
    for step in range(args.steps):
        run.log({"loss": target + 4.0 / (step + 1)}, step=step)
        time.sleep(args.pause)
    run.summary["loss"] = target
    """
)


def sweep_file(
    project: Path, *, expid: str, trials: int, parallel: int, steps: int = 8,
    pause: float = 0.1, pruner: str = '{ type = "median", startup_trials = 4, min_steps = 2 }',
    method: str = "tpe", gpus: int = 1, command: str = "python quad.py", extra: str = "",
) -> Path:  # fmt: skip
    """Write quad.py and an experiment file searching it; commit both."""
    (project / "quad.py").write_text(QUAD_PY)
    path = project / "experiments" / "toy" / f"05_{expid}.xp.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            id = "{expid}"
            name = "quad"
            command = "{command} --x {{x}} --y {{y}} --steps {{steps}} --pause {{pause}}"
            gpus = {gpus}
            {extra}

            [grid]
            steps = {steps}
            pause = {pause}

            [search]
            method = "{method}"
            metric = "loss"
            goal = "minimize"
            trials = {trials}
            parallel = {parallel}
            seed = 7
            pruner = {pruner}

            [search.params]
            x = {{ low = -5.0, high = 5.0 }}
            y = {{ low = -5.0, high = 5.0 }}
            """
        )
    )
    git(project, "add", "-A")
    git(project, "commit", "-qm", f"search {expid}")
    return path


def trial_runs(runs_root: Path, expid: str) -> dict[int, list[dict[str, Any]]]:
    """run.json of every trial run, by trial key, oldest first."""
    found: dict[int, list[dict[str, Any]]] = {}
    for run in sorted(runs_root.glob(f"{expid}_*")):
        info = json.loads((run / "run.json").read_text())
        found.setdefault(info["search"]["trial"], []).append(info)
    return found


def check_complete(runs_root: Path, expid: str, trials: int) -> dict[int, list[dict[str, Any]]]:
    """Exactly `trials` trials, keys 0..trials-1, each ended; a trial has a second run
    only when its first was lost (a retry)."""
    found = trial_runs(runs_root, expid)
    assert sorted(found) == list(range(trials)), sorted(found)
    for key, runs in found.items():
        assert runs[-1]["status"] in ("finished", "pruned", "failed", "lost"), (key, runs[-1])
        for earlier in runs[:-1]:
            assert earlier["status"] == "lost", (key, [r["status"] for r in runs])
    return found


def prune_delays(runs_root: Path, expid: str) -> list[float]:
    """For each pruned run: seconds from the logging of the deciding value to its end."""
    delays = []
    for runs in trial_runs(runs_root, expid).values():
        info = runs[-1]
        if info["status"] != "pruned":
            continue
        step = int(re.search(r"at step (\d+)", info["reason"])[1])  # type: ignore[index]
        lines = (runs_root / info["name"] / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        logged = next(r["time"] for r in records if r.get("step") == step)
        delays.append(info["ended"] - logged)
    return delays


class ActiveCount(threading.Thread):
    """The most trial runs queued or running at once, seen every 0.05 s."""

    def __init__(self, runs_root: Path, expid: str) -> None:
        super().__init__(daemon=True)
        self.runs_root, self.expid = runs_root, expid
        self.most = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            active = 0
            for run in self.runs_root.glob(f"{self.expid}_*/run.json"):
                try:
                    active += json.loads(run.read_text())["status"] in ("queued", "running")
                except (OSError, ValueError):
                    continue
            self.most = max(self.most, active)


def check_tpe_sweep(runs_root: Path, expid: str, watcher: ActiveCount) -> str:
    """What every 30-trial TPE sweep of quad.py (parallel 3, median pruner) must show,
    whatever the backend; returns the best run's name."""
    found = check_complete(runs_root, expid, 30)
    assert all(len(runs) == 1 for runs in found.values())  # nothing was lost, nothing doubled
    statuses = [runs[-1]["status"] for runs in found.values()]
    assert statuses.count("pruned") >= 3, statuses  # clearly worse curves were stopped
    assert "failed" not in statuses
    # The best trial is within distance 1 of the optimum (2, -1): loss <= 1.
    losses = {
        runs[-1]["name"]: json.loads((runs_root / runs[-1]["name"] / "summary.json").read_text())[
            "loss"
        ]
        for runs in found.values()
        if runs[-1]["status"] == "finished"
    }
    best = min(losses, key=losses.__getitem__)
    assert losses[best] <= 1.0, sorted(losses.values())[:3]
    assert watcher.most <= 3, watcher.most  # never more than `parallel` queued or running
    delays = prune_delays(runs_root, expid)
    assert max(delays) <= 5.0, delays
    return best


def detached_pid(result: Result) -> int:
    """The controller pid `xp sweep --detach` printed ("... (pid N) ...")."""
    return int(result.stdout.split("pid ")[1].split(")")[0])
