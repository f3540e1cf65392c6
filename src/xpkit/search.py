"""The `[search]` table of an experiment file: what `xp sweep` searches, validated.

Plain data, no Optuna here (`sweep/engine.py` turns it into Optuna's samplers,
pruners and distributions), so that parsing an experiment file stays cheap.

    [search]
    method = "tpe"            # tpe, random, cmaes, grid, qmc
    metric = "val_loss"       # a key the program logs (run.log) or puts in its summary
    goal = "minimize"         # or "maximize"
    trials = 30               # and/or budget = "2h": no new trial after that
    parallel = 4              # trials queued or running at once
    seed = 0                  # the sampler's seed
    pruner = { type = "median", min_steps = 5 }   # or "asha", "hyperband", "none"

    [search.params]
    lr = { low = 1e-5, high = 1e-1, log = true }
    layers = { values = [2, 4, 8] }
    dropout = { low = 0.0, high = 0.5, step = 0.1 }
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from xpkit.errors import ConfigError
from xpkit.suggest import close_to, did_you_mean

if TYPE_CHECKING:
    import optuna

METHODS = ("tpe", "random", "cmaes", "grid", "qmc")
GOALS = ("minimize", "maximize")
PRUNERS = ("median", "asha", "hyperband", "none")
FIELDS = {
    "method": f"the sampler: {', '.join(METHODS)} (default tpe)",
    "metric": "the value to optimize: a metric the program logs, or a key of its summary",
    "goal": "minimize or maximize",
    "trials": "how many trials in all (an integer >= 1)",
    "budget": "stop asking for new trials after this long, e.g. '2h', '90m'",
    "parallel": "trials queued or running at once (default 4)",
    "seed": "the sampler's seed (an integer)",
    "pruner": f"stops hopeless trials early: {', '.join(PRUNERS)}, or a table "
    "{ type = 'median', min_steps = 5 }",
    "params": "[search.params]: name = { low, high, log, step } or { values = [...] }",
}
PRUNER_KEYS = {
    "median": ("type", "min_steps", "startup_trials"),
    "asha": ("type", "min_steps", "reduction_factor"),
    "hyperband": ("type", "min_steps", "max_steps", "reduction_factor"),
    "none": ("type",),
}
DEFAULT_PARALLEL = 4
Scalar = str | int | float | bool
Fail = Callable[[str, str], ConfigError]


@dataclass(frozen=True)
class Space:
    """One parameter's range: floats or ints between low and high (log scale, step),
    or a list of values."""

    kind: str  # "float", "int" or "values"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    values: tuple[Scalar, ...] = ()

    def grid(self) -> list[Scalar]:
        """Every value, for method = 'grid' (a range needs a step, ints step 1)."""
        if self.kind == "values":
            return list(self.values)
        assert self.low is not None and self.high is not None
        step = self.step if self.step is not None else 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        if self.kind == "int":
            return [int(self.low + i * step) for i in range(count)]
        return [round(self.low + i * step, 12) for i in range(count)]


@dataclass(frozen=True)
class Search:
    metric: str
    goal: str
    params: dict[str, Space]
    method: str = "tpe"
    trials: int | None = None
    budget: float | None = None  # seconds
    parallel: int = DEFAULT_PARALLEL
    seed: int | None = None
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "none"})

    @property
    def planned(self) -> int | None:
        """How many trials in all: `trials`, else every point of a grid search."""
        if self.trials is not None:
            return self.trials
        if self.method == "grid":
            return math.prod(len(s.grid()) for s in self.params.values())
        return None

    def fingerprint(self) -> str:
        """What a study cannot change once it started (the space, method, metric, goal,
        seed); trials, budget, parallel and the pruner may change between restarts."""
        fixed = {
            k: v
            for k, v in asdict(self).items()
            if k in ("metric", "goal", "params", "method", "seed")
        }
        text = json.dumps(fixed, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> TypeGuard[int | float]:
    """A finite number (TOML has inf and nan; booleans are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_search(raw: Any, fail: Fail) -> Search:
    """Validate a `[search]` table; every error names the key and what is valid."""
    if not isinstance(raw, dict):
        raise fail("search", f"'search' must be a table [search], got {raw!r}")
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise fail(
            unknown[0],
            f"search.{unknown[0]}: unknown key{did_you_mean(unknown[0], FIELDS, 'keys')}",
        )
    method = raw.get("method", "tpe")
    if method not in METHODS:
        raise fail(
            "method",
            f"search.method must be one of {', '.join(METHODS)}, got {method!r}"
            + _close(str(method), METHODS),
        )
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise fail(
            "search",
            'search.metric is missing: name the value to optimize, e.g. metric = "val_loss"',
        )
    goal = raw.get("goal")
    if goal not in GOALS:
        raise fail("goal", f"search.goal must be 'minimize' or 'maximize', got {goal!r}")
    trials = raw.get("trials")
    if trials is not None and (not _int(trials) or trials < 1):
        raise fail("trials", f"search.trials must be an integer >= 1, got {trials!r}")
    budget = _budget(raw.get("budget"), fail)
    parallel = raw.get("parallel", DEFAULT_PARALLEL)
    if not _int(parallel) or parallel < 1:
        raise fail("parallel", f"search.parallel must be an integer >= 1, got {parallel!r}")
    seed = raw.get("seed")
    if seed is not None and (not _int(seed) or seed < 0):
        raise fail("seed", f"search.seed must be an integer >= 0, got {seed!r}")
    params_raw = raw.get("params")
    if not isinstance(params_raw, dict) or not params_raw:
        raise fail(
            "search",
            "[search.params] is missing or empty: give each searched parameter "
            "a range, e.g. lr = { low = 1e-5, high = 1e-1, log = true }",
        )
    params = {name: _space(name, value, fail) for name, value in params_raw.items()}
    search = Search(
        metric=metric,
        goal=goal,
        params=params,
        method=method,
        trials=trials,
        budget=budget,
        parallel=parallel,
        seed=seed,
        pruner=_pruner(raw.get("pruner", "none"), fail),
    )
    if method == "grid":
        ranged = [n for n, s in params.items() if s.kind == "float" and s.step is None]
        if ranged:
            raise fail(
                ranged[0],
                f"search.params.{ranged[0]}: method = 'grid' needs a step "
                "(or values) for every float range",
            )
    if method == "cmaes" and not any(s.kind != "values" for s in params.values()):
        raise fail(
            "method",
            "method = 'cmaes' searches numeric ranges; every parameter here is "
            "a list of values (use tpe or random)",
        )
    if search.planned is None and budget is None:
        raise fail("search", "[search] needs trials = N and/or budget = '2h' (when to stop)")
    return search


def _close(name: str, known: tuple[str, ...]) -> str:
    close = close_to(name, known)
    return f"; did you mean '{close[0]}'?" if close else ""


def _budget(value: Any, fail: Fail) -> float | None:
    if value is None:
        return None
    if _number(value) and value > 0:
        return float(value)
    from xpkit.errors import StoreError
    from xpkit.store.trash import parse_age

    try:
        if isinstance(value, str):
            return parse_age(value)
    except StoreError:
        pass
    raise fail(
        "budget",
        f"search.budget must be a duration such as '2h', '90m', '45s' (or seconds), got {value!r}",
    )


def _space(name: str, value: Any, fail: Fail) -> Space:
    where = f"search.params.{name}"
    if isinstance(value, list):
        value = {"values": value}
    if not isinstance(value, dict):
        raise fail(
            name,
            f"{where} must be {{ low = ..., high = ... }} or {{ values = [...] }}, got {value!r}",
        )
    keys = set(value)
    if "values" in value:
        extra = keys - {"values"}
        if extra:
            raise fail(name, f"{where}: {sorted(extra)[0]!r} does not go with 'values'")
        values = value["values"]
        if not isinstance(values, list) or not values:
            raise fail(name, f"{where}.values must be a non-empty list")
        for index, item in enumerate(values):
            if not isinstance(item, str | int | float | bool):
                raise fail(name, f"{where}.values[{index}] is {item!r}; values must be scalars")
        if len({json.dumps(v) for v in values}) < len(values):
            raise fail(name, f"{where}.values lists a value twice")
        return Space("values", values=tuple(values))
    unknown = keys - {"low", "high", "log", "step"}
    if unknown:
        first = sorted(unknown)[0]
        raise fail(
            name,
            f"{where}: unknown key {first!r}"
            + did_you_mean(first, ("low", "high", "log", "step", "values"), "keys")
            + " (valid: low, high, log, step; or values)",
        )
    low, high = value.get("low"), value.get("high")
    if not (_number(low) and _number(high)):
        raise fail(name, f"{where} needs numbers low and high, got low={low!r}, high={high!r}")
    if not low < high:
        raise fail(name, f"{where}: low ({low}) must be less than high ({high})")
    log, step = value.get("log", False), value.get("step")
    if not isinstance(log, bool):
        raise fail(name, f"{where}.log must be true or false, got {log!r}")
    if step is not None and (not _number(step) or step <= 0):
        raise fail(name, f"{where}.step must be a number > 0, got {step!r}")
    if log and step is not None:
        raise fail(
            name,
            f"{where}: log and step do not go together (Optuna samples a log "
            "range continuously); drop one",
        )
    if log and low <= 0:
        raise fail(name, f"{where}: a log range needs low > 0, got {low}")
    kind = "int" if _int(low) and _int(high) and (step is None or _int(step)) else "float"
    return Space(kind, low=low, high=high, log=log, step=step)


def _pruner(value: Any, fail: Fail) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or value.get("type") not in PRUNERS:
        shown = value.get("type") if isinstance(value, dict) else value
        raise fail(
            "pruner",
            f"search.pruner must be one of {', '.join(PRUNERS)} (or a table "
            f"with type = ...), got {shown!r}" + _close(str(shown), PRUNERS),
        )
    kind = value["type"]
    for key, item in value.items():
        if key not in PRUNER_KEYS[kind]:
            raise fail(
                "pruner",
                f"search.pruner.{key}: the {kind} pruner takes "
                f"{', '.join(PRUNER_KEYS[kind][1:]) or 'no options'}",
            )
        if key != "type" and (not _int(item) or item < (2 if key == "reduction_factor" else 0)):
            least = 2 if key == "reduction_factor" else 0
            raise fail("pruner", f"search.pruner.{key} must be an integer >= {least}, got {item!r}")
    return dict(value)


def check_search_fits(
    search: Search,
    grid: dict[str, list[Any]],
    runs: list[Any],
    placeholders: list[str],
    fail: Fail,
) -> None:
    """With [search], [grid] gives fixed values, [[runs]] has no place, and every
    placeholder of the command has a value."""
    if runs:
        raise fail("runs", "[[runs]] does not go with [search]: a sweep's runs are its trials")
    for key, values in grid.items():
        if len(values) > 1:
            raise fail(
                key,
                f"grid.{key} has {len(values)} values; with [search], [grid] gives "
                f"fixed values. Search it instead: {key} = {{ values = {values!r} }} "
                "under [search.params]".replace("'", '"'),
            )
        if key in search.params:
            raise fail(key, f"'{key}' is both in [grid] and in [search.params]; keep one")
    known = {*grid, *search.params, "config"}
    for name in placeholders:
        if name not in known:
            raise fail(
                "command",
                f"the command uses {{{name}}}, which neither [grid] nor "
                "[search.params] gives" + did_you_mean(name, known - {"config"}, "parameters"),
            )


# --- Optuna's form of a search (Optuna imported only when one is used) ---------------


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "xp sweep needs Optuna: pip install 'xpkit[sweep]' (optuna, cmaes, scikit-learn)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE and the constant liar are "experimental" in Optuna's words only
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def distribution(space: Space) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if space.kind == "values":
        return CategoricalDistribution(list(space.values))
    if space.kind == "int":
        return IntDistribution(
            int(space.low or 0), int(space.high or 0), log=space.log, step=int(space.step or 1)
        )
    step = float(space.step) if space.step is not None else None
    high = float(space.high or 0)
    if step is not None:  # Optuna wants high on the step grid
        low = float(space.low or 0)
        high = low + math.floor((high - low) / step + 1e-9) * step
    return FloatDistribution(float(space.low or 0), high, log=space.log, step=step)


def distributions(search: Search) -> dict[str, Any]:
    return {name: distribution(space) for name, space in search.params.items()}


def frozen(
    search: Search,
    params: dict[str, Any],
    *,
    state: str,
    value: float | None,
    intermediate: dict[int, float],
    attrs: dict[str, Any],
) -> optuna.trial.FrozenTrial:
    """A finished trial as a run recorded it, for `study.add_trial`."""
    optuna = import_optuna()
    dists = distributions(search)
    return optuna.trial.create_trial(
        params={k: params[k] for k in dists},
        distributions=dists,
        value=value if state == "COMPLETE" else None,
        state=getattr(optuna.trial.TrialState, state),
        intermediate_values=intermediate,
        user_attrs=attrs,
    )


def fits(search: Search, params: dict[str, Any]) -> bool:
    """Whether a run's params are a point of this search's space."""
    try:
        for name, dist in distributions(search).items():
            if name not in params or not dist._contains(dist.to_internal_repr(params[name])):
                return False
    except (TypeError, ValueError):
        return False
    return True
