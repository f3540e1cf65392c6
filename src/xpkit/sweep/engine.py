"""Optuna is the engine: a `Search` (search.py) as Optuna's distributions, sampler and
pruner, and the study kept in Optuna's JournalStorage on the controller's local disk.

The journal is a cache of the study: the controller is its only writer, so no lock is
shared over NFS; a journal that is lost or unreadable is rebuilt from the trials' runs
(`trials.py`), which are the truth.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from xpkit.errors import ConfigError
from xpkit.search import (  # noqa: F401 - the engine's view of a search
    Search,
    distributions,
    fits,
    frozen,
    import_optuna,
)
from xpkit.settings import XP_CACHE_DIR
from xpkit.store.rundir import new_lines
from xpkit.values import path_digest

KEY = "key"  # the trial's number as its runs record it (search.trial in run.json)


def sampler(search: Search) -> Any:
    optuna = import_optuna()
    samplers = optuna.samplers
    seed = search.seed
    if search.method == "random":
        return samplers.RandomSampler(seed=seed)
    if search.method == "grid":
        grid = {name: space.grid() for name, space in search.params.items()}
        return samplers.GridSampler(grid, seed=seed)
    if search.method == "qmc":
        return samplers.QMCSampler(seed=seed)
    if search.method == "cmaes":
        try:
            import cmaes  # type: ignore[import-untyped]  # noqa: F401 - Optuna's CMA-ES needs it
        except ImportError:
            raise ConfigError(
                "method = 'cmaes' needs the cmaes package: pip install 'xpkit[sweep]'"
            ) from None
        return samplers.CmaEsSampler(seed=seed)
    # Trials run in parallel: the constant liar keeps TPE from proposing the same
    # point to every free slot.
    return samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def pruner(search: Search) -> Any:
    pruners = import_optuna().pruners
    options = search.pruner
    kind = options["type"]
    if kind == "median":
        return pruners.MedianPruner(
            n_startup_trials=options.get("startup_trials", 5),
            n_warmup_steps=options.get("min_steps", 0),
        )
    if kind == "asha":
        return pruners.SuccessiveHalvingPruner(
            min_resource=options.get("min_steps", "auto"),
            reduction_factor=options.get("reduction_factor", 3),
        )
    if kind == "hyperband":
        return pruners.HyperbandPruner(
            min_resource=options.get("min_steps", 1),
            max_resource=options.get("max_steps", "auto"),
            reduction_factor=options.get("reduction_factor", 3),
        )
    return pruners.NopPruner()


def tell(study: Any, trial: Any, value: float | None = None, state: Any = None) -> None:
    """`study.tell`, where a GridSampler whose grid is exhausted asks the study to stop
    (an `optimize()` notion that raises under ask-and-tell, after the tell was stored)."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def journal_path(runs_root: Path, expid: str) -> Path:
    """On the controller's local disk, one per runs root and experiment."""
    return XP_CACHE_DIR.get() / "sweeps" / path_digest(runs_root) / f"{expid}.journal"


def repair_journal(path: Path) -> None:
    """What a controller killed mid-write left: a last line without its newline (the
    next append would glue onto it), and Optuna's lock file. Only the controller, which
    holds the sweep's controller lock, calls this."""
    Path(f"{path}.lock").unlink(missing_ok=True)
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass


def open_study(search: Search, path: Path, name: str) -> Any:
    """The study in the journal at `path`, created if new; ValueError (or KeyError) when
    the journal cannot be read."""
    optuna = import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)
    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction=search.goal,
        sampler=sampler(search),
        pruner=pruner(search),
        load_if_exists=True,
    )


def set_aside(path: Path) -> Path | None:
    """Move an unusable journal aside (kept, never deleted) before a rebuild."""
    if not path.exists():
        return None
    aside = path.with_name(f"{path.name}.{int(os.path.getmtime(path))}.bad")
    os.replace(path, aside)
    return aside


def value_of(summary: dict[str, Any], metric: str) -> float | None:
    value = summary.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metric_values(path: Path, metric: str, offset: int = 0) -> tuple[list[tuple[int, float]], int]:
    """(step, value) of `metric` in metrics.jsonl from byte `offset`, and the offset after
    the last complete line (a line being written is read next time)."""
    try:
        data, after = new_lines(path, offset)
    except FileNotFoundError:
        return [], offset
    found = []
    for line in data.splitlines():
        if metric.encode() not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step, value = record.get("step"), value_of(record, metric)
        if isinstance(step, int) and not isinstance(step, bool) and value is not None:
            found.append((step, value))
    return found, after
