"""The [search] table of experiment files (search.py) and its Optuna form (sweep/engine.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from xpkit.errors import ConfigError
from xpkit.experiment import load_experiment
from xpkit.search import Space

HEAD = 'id = "srch01"\nname = "quad"\ncommand = "python quad.py --lr {lr} --layers {layers}"\n'
SEARCH = textwrap.dedent(
    """\
    [search]
    method = "tpe"
    metric = "val_loss"
    goal = "minimize"
    trials = 20
    budget = "2h"
    parallel = 3
    seed = 4
    pruner = { type = "asha", min_steps = 2, reduction_factor = 3 }

    [search.params]
    lr = { low = 1e-5, high = 1e-1, log = true }
    layers = { values = [2, 4, 8] }
    dropout = { low = 0.0, high = 0.5, step = 0.1 }
    depth = { low = 1, high = 9, step = 2 }
    """
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "01_quad.xp.toml"
    path.write_text(text)
    return path


def test_a_full_search_table(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, HEAD + "[grid]\nepochs = 3\n" + SEARCH))
    search = experiment.search
    assert search is not None
    assert (search.method, search.metric, search.goal) == ("tpe", "val_loss", "minimize")
    assert (search.trials, search.budget, search.parallel, search.seed) == (20, 7200.0, 3, 4)
    assert search.pruner == {"type": "asha", "min_steps": 2, "reduction_factor": 3}
    assert search.params["lr"] == Space("float", low=1e-5, high=1e-1, log=True)
    assert search.params["depth"].kind == "int" and search.params["depth"].grid() == [1, 3, 5, 7, 9]
    assert search.params["dropout"].grid() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    spec = experiment.trial_spec({"lr": 0.0012345, "layers": 4, "dropout": 0.1, "depth": 3})
    assert spec.command == "python quad.py --lr 0.0012345 --layers 4"
    assert spec.params == {"epochs": 3, "lr": 0.0012345, "layers": 4, "dropout": 0.1, "depth": 3}
    assert spec.slug == "quad-lr0.00123-layers4-dropout0.1-depth3"


def test_what_a_study_may_change_between_restarts(tmp_path: Path) -> None:
    base = load_experiment(write(tmp_path, HEAD + SEARCH)).search
    more = load_experiment(write(tmp_path, HEAD + SEARCH.replace("trials = 20", "trials = 40")
                                 .replace("parallel = 3", "parallel = 8"))).search  # fmt: skip
    other = load_experiment(write(tmp_path, HEAD + SEARCH.replace("high = 1e-1", "high = 1.0")))
    assert base is not None and more is not None and other.search is not None
    assert base.fingerprint() == more.fingerprint() != other.search.fingerprint()


def test_grid_method_counts_its_points_and_engine_distributions(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from xpkit.sweep import engine

    text = HEAD + SEARCH.replace('method = "tpe"', 'method = "grid"').replace("trials = 20\n", "")
    text = text.replace("lr = { low = 1e-5, high = 1e-1, log = true }", "lr = [0.1, 0.01]")
    search = load_experiment(write(tmp_path, text)).search
    assert search is not None and search.planned == 2 * 3 * 6 * 5
    dists = engine.distributions(search)
    assert dists["depth"].step == 2 and dists["layers"].choices == (2, 4, 8)
    assert dists["dropout"].step == pytest.approx(0.1) and dists["dropout"].high == pytest.approx(
        0.5
    )
    assert engine.fits(search, {"lr": 0.1, "layers": 4, "dropout": 0.2, "depth": 5})
    assert not engine.fits(search, {"lr": 0.5, "layers": 4, "dropout": 0.2, "depth": 5})


def test_metric_values_reads_complete_lines_from_an_offset(tmp_path: Path) -> None:
    from xpkit.sweep import engine

    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "loss": 3.0}, {"attempt": 2, "time": 1.0}, {"step": 1, "acc": 0.5},
             {"step": 2, "loss": float("nan")}, {"step": 3, "loss": 1.5}]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"step": 4, "loss"')
    values, offset = engine.metric_values(path, "loss")
    assert values == [(0, 3.0), (3, 1.5)]  # no step, no loss, not finite: skipped
    with open(path, "a") as f:
        f.write(': 1.0}\n{"step": 5, "loss": 0.5}\n')
    assert engine.metric_values(path, "loss", offset)[0] == [(4, 1.0), (5, 0.5)]


BAD = [
    ("metric", 'goal = "minimize"\ntrials = 2', "search.metric is missing"),
    ("goal", 'metric = "l"\ngoal = "min"\ntrials = 2', "search.goal must be 'minimize' or 'maximize', got 'min'"),
    ("trials", 'metric = "l"\ngoal = "minimize"\ntrials = 0', "search.trials must be an integer >= 1, got 0"),
    ("parallel", 'metric = "l"\ngoal = "minimize"\ntrials = 2\nparallel = 0', "search.parallel must be an integer >= 1"),
    ("seed", 'metric = "l"\ngoal = "minimize"\ntrials = 2\nseed = -1', "search.seed must be an integer >= 0"),
    ("budget", 'metric = "l"\ngoal = "minimize"\nbudget = "2 hours"', "search.budget must be a duration such as '2h'"),
    ("method", 'metric = "l"\ngoal = "minimize"\ntrials = 2\nmethod = "tpee"', "got 'tpee'; did you mean 'tpe'?"),
    ("pruner", 'metric = "l"\ngoal = "minimize"\ntrials = 2\npruner = "medain"', "search.pruner must be one of median, asha, hyperband, none (or a table with type = ...), got 'medain'; did you mean 'median'?"),
    ("pruner-key", 'metric = "l"\ngoal = "minimize"\ntrials = 2\npruner = { type = "median", reduction_factor = 3 }', "search.pruner.reduction_factor: the median pruner takes min_steps, startup_trials"),
    ("pruner-value", 'metric = "l"\ngoal = "minimize"\ntrials = 2\npruner = { type = "asha", reduction_factor = 1 }', "search.pruner.reduction_factor must be an integer >= 2, got 1"),
    ("unknown", 'metric = "l"\ngoal = "minimize"\ntrials = 2\nparalel = 2', "search.paralel: unknown key; did you mean 'parallel'"),
]  # fmt: skip
PARAMS = "[search.params]\nx = { low = 0.0, high = 1.0 }"


@pytest.mark.parametrize(
    ("body", "message"), [(b, m) for _, b, m in BAD], ids=[i for i, _, _ in BAD]
)
def test_bad_search_settings(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, 'id = "srch01"\ncommand = "python q.py --x {x}"\n[search]\n'
                 f"{body}\n{PARAMS}\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


BAD_PARAMS = [
    ("empty", "", "[search.params] is missing or empty"),
    ("no-high", "x = { low = 0.0 }", "search.params.x needs numbers low and high, got low=0.0, high=None"),
    ("inf", "x = { low = 0.0, high = inf }", "search.params.x needs numbers low and high"),
    ("order", "x = { low = 2, high = 1 }", "search.params.x: low (2) must be less than high (1)"),
    ("log-low", "x = { low = 0.0, high = 1.0, log = true }", "a log range needs low > 0, got 0.0"),
    ("log-step", "x = { low = 0.1, high = 1.0, log = true, step = 0.1 }", "log and step do not go together"),
    ("step", "x = { low = 0.0, high = 1.0, step = 0 }", "search.params.x.step must be a number > 0, got 0"),
    ("key", "x = { low = 0.0, high = 1.0, stpe = 0.1 }", "search.params.x: unknown key 'stpe'; did you mean 'step'?"),
    ("values-empty", "x = { values = [] }", "search.params.x.values must be a non-empty list"),
    ("values-twice", "x = [1, 1]", "search.params.x.values lists a value twice"),
    ("values-table", "x = [{ a = 1 }]", "search.params.x.values[0] is {'a': 1}; values must be scalars"),
    ("values-extra", "x = { values = [1], low = 0 }", "search.params.x: 'low' does not go with 'values'"),
    ("scalar", "x = 3", "search.params.x must be { low = ..., high = ... } or { values = [...] }, got 3"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "message"), [(p, m) for _, p, m in BAD_PARAMS],
                         ids=[i for i, _, _ in BAD_PARAMS])  # fmt: skip
def test_bad_parameter_spaces(tmp_path: Path, params: str, message: str) -> None:
    path = write(tmp_path, 'id = "srch01"\ncommand = "python q.py"\n[search]\nmetric = "l"\n'
                 f'goal = "minimize"\ntrials = 2\n[search.params]\n{params}\n')  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert message in str(caught.value)


BAD_COMBINATIONS = [
    ("grid-many", '[grid]\nseed = [0, 1]\n', "x = [1, 2]", 'grid.seed has 2 values; with [search], [grid] gives fixed values. Search it instead: seed = { values = [0, 1] }'),
    ("grid-both", '[grid]\nx = 1\n', "x = [1, 2]", "'x' is both in [grid] and in [search.params]"),
    ("runs", '[[runs]]\nx = 1\n', "x = [1, 2]", "[[runs]] does not go with [search]"),
    ("placeholder", "", "y = [1, 2]", "the command uses {x}, which neither [grid] nor [search.params] gives; valid parameters: y"),
    ("grid-float", "", 'x = { low = 0.0, high = 1.0 }', "method = 'grid' needs a step (or values) for every float range"),
    ("cmaes-values", "", "x = [1, 2]", "method = 'cmaes' searches numeric ranges"),
]  # fmt: skip


@pytest.mark.parametrize(("before", "params", "message"), [c[1:] for c in BAD_COMBINATIONS],
                         ids=[c[0] for c in BAD_COMBINATIONS])  # fmt: skip
def test_search_with_grid_runs_and_command(
    tmp_path: Path, before: str, params: str, message: str
) -> None:
    method = "grid" if "'grid'" in message else "cmaes" if "'cmaes'" in message else "tpe"
    path = write(tmp_path, f'id = "srch01"\ncommand = "python q.py --x {{x}}"\n{before}[search]\n'
                 f'metric = "l"\ngoal = "minimize"\ntrials = 2\nmethod = "{method}"\n'
                 f"[search.params]\n{params}\n")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert message in str(caught.value)


@pytest.mark.parametrize("method", ["tpe", "random", "cmaes", "qmc", "grid"])
def test_every_method_asks_points_of_its_space(tmp_path: Path, method: str) -> None:
    """Each sampler, driven the controller's way (ask with the space, tell), proposes
    only points of the space; a grid search visits each point once."""
    optuna = pytest.importorskip("optuna")
    from xpkit.sweep import engine

    text = HEAD.replace(
        "--lr {lr} --layers {layers}", "--lr {lr} --depth {depth}"
    ) + textwrap.dedent(
        f"""\
        [search]
        method = "{method}"
        metric = "loss"
        goal = "minimize"
        seed = 1
        {"" if method == "grid" else "trials = 12"}
        [search.params]
        lr = {{ low = 0.1, high = 0.5, step = 0.1 }}
        depth = {{ low = 1, high = 3 }}
        """
    )
    search = load_experiment(write(tmp_path, text)).search
    assert search is not None
    study = optuna.create_study(direction="minimize", sampler=engine.sampler(search),
                                pruner=engine.pruner(search))  # fmt: skip
    seen = []
    for _ in range(search.planned or 0):
        trial = study.ask(fixed_distributions=engine.distributions(search))
        assert engine.fits(search, trial.params), trial.params
        seen.append((round(trial.params["lr"], 6), trial.params["depth"]))
        engine.tell(study, trial, (trial.params["lr"] - 0.3) ** 2 + trial.params["depth"])
    if method == "grid":
        assert search.planned == 15 and len(set(seen)) == 15


def test_importances_in_a_report_with_and_without_optuna(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fANOVA ranks the param that matters first; without Optuna the report is still
    made and says how to get importances."""
    pytest.importorskip("optuna")
    from xpkit.report import search as report_search

    text = HEAD + SEARCH.replace("lr = { low = 1e-5, high = 1e-1, log = true }\n", "")
    search = load_experiment(write(tmp_path, text.replace(" --lr {lr}", ""))).search
    assert search is not None
    points = [
        report_search.TrialPoint(k, f"srch01_{k:03d}", "finished", (depth - 5) ** 2 + 0.01 * k,
                                 {"layers": 4, "dropout": 0.1 * (k % 5), "depth": depth})
        for k, depth in enumerate([1, 3, 5, 7, 9, 1, 3, 5, 7, 9, 3, 5])
    ]  # fmt: skip
    found, how = report_search.importances(points, search)
    assert how == "fANOVA" and found[0][0] == "depth", found

    def missing() -> None:
        raise ConfigError("xp sweep needs Optuna: pip install 'xpkit[sweep]'")

    monkeypatch.setattr(report_search, "import_optuna", missing)
    assert report_search.importances(points, search) == (
        [],
        "xp sweep needs Optuna: pip install 'xpkit[sweep]'",
    )
