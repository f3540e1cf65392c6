"""Config scenarios for `make bench`: building a 1,000-node config (xpkit, and Hydra's
instantiate on the same tree when installed) and `xp diff` of 10,000-line configs."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class Layer:
    def __init__(self, dim: int, act: str = "relu", dropout: float = 0.0):
        self.dim, self.act, self.dropout = dim, act, dropout


class Model:
    def __init__(self, layers: list[Layer], name: str = "net"):
        self.layers, self.name = layers, name


def thousand_nodes() -> dict[str, Any]:
    target = f"{__name__}.Layer"
    layers = [{"_target_": target, "dim": i, "act": "gelu", "dropout": 0.1} for i in range(999)]
    return {"_target_": f"{__name__}.Model", "layers": layers, "name": "bench"}


def time_build(reps: int) -> dict[str, float]:
    from xpkit.config.build import build

    spec = thousand_nodes()
    times = {"xpkit build (validate + construct)": _median(lambda: build(spec), reps)}
    try:
        from hydra.utils import instantiate
    except ImportError:
        return times
    times["hydra instantiate (no type checks)"] = _median(lambda: instantiate(spec), reps)
    return times


def _median(action: Any, reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _big_config(seed: int) -> dict[str, Any]:
    """10,000 leaves; `seed` changes one leaf in a hundred."""
    return {
        f"block{b}": {f"p{p}": (b * 100 + p + (seed if p == 0 else 0)) for p in range(100)}
        for b in range(100)
    }


def time_diff(work: Path, reps: int) -> float:
    project = work / "diff"
    runs = project / "runs"
    runs.mkdir(parents=True)
    (project / "xp.toml").write_text('runs = "runs"\n')
    for trial, seed in ((1, 0), (2, 1)):
        path = runs / f"diffbn_{trial:03d}_big"
        path.mkdir()
        run = {"name": path.name, "experiment_id": "diffbn", "trial": trial, "status": "finished",
               "params": {}, "command": "x", "snapshot": None}  # fmt: skip
        (path / "run.json").write_text(json.dumps(run))
        (path / "config.json").write_text(json.dumps(_big_config(seed), indent=2))
    lines = len((runs / "diffbn_001_big" / "config.json").read_text().splitlines())
    assert lines >= 10_000, lines
    env = {**os.environ, "XP_CACHE_DIR": str(work / "diff-cache")}
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(["xp", "diff", "diffbn/1", "diffbn/2"], cwd=project, env=env,
                       check=True, capture_output=True)  # fmt: skip
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def scenario_config(work: Path, reps: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    return {"build": time_build(reps), "diff_s": time_diff(work, reps)}
