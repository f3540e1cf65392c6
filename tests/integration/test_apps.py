"""Hydra apps and LightningCLI scripts under xpkit, as they are (the bundled examples,
the real hydra-core and lightning): overrides from the grid, recorded as params, the
composed config as config.json, `xp diff` between composed configs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, git, read_run, runs_of

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytest.importorskip("hydra")


def example_project(name: str, tmp_path: Path, xp: Callable[..., Result]) -> Path:
    project = tmp_path / name
    shutil.copytree(EXAMPLES / name, project)
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.name", "Test")
    git(project, "config", "user.email", "test@example.com")
    assert xp("init", cwd=project).returncode == 0
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "example")
    return project


def config_of(run: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads((run / "config.json").read_text())
    return result


def test_a_hydra_app_runs_as_it_is(tmp_path: Path, xp: Callable[..., Result]) -> None:
    project = example_project("hydra-toy", tmp_path, xp)
    result = xp("run", "experiments/hydra/01_sweep.xp.toml", cwd=project)
    assert result.returncode == 0, result.output
    runs = runs_of(project / "runs")
    assert [read_run(r)["status"] for r in runs] == ["finished"] * 4
    first, last = runs[0], runs[-1]
    assert read_run(first)["params"] == {"seed": 0, "model": "mlp", "optimizer.lr": 0.1}
    assert read_run(last)["params"] == {"seed": 0, "model": "wide", "optimizer.lr": 0.01}
    assert 'hydra.run.dir="$XP_RUN_DIR"' in str(read_run(first)["command"])
    assert (first / ".hydra" / "config.yaml").is_file()  # Hydra's outputs are the run's
    composed = config_of(last)  # the config Hydra composed from the defaults list
    assert composed["model"] == {
        "_target_": "models.MLP",
        "hidden": 64,
        "depth": 4,
        "kernel": [1, 1],
    }
    assert composed["optimizer"]["lr"] == 0.01  # type: ignore[index]
    assert "final_loss" in (last / "summary.json").read_text()  # the app's own xp.init()
    listed = xp("ls", "--columns", "name,model,optimizer.lr", cwd=project)
    assert "optimizer.lr" in listed.stdout and "wide" in listed.stdout, listed.output
    diff = xp("diff", "hyd001/1", "hyd001/4", cwd=project)
    assert diff.returncode == 0, diff.output
    for line in ["model.hidden: 16 → 64", "optimizer.lr: 0.1 → 0.01", "model: mlp → wide"]:
        assert line in diff.stdout, diff.stdout
    assert "hydra" not in diff.stdout.split("params")[0]  # xpkit's own settings differ nowhere


def test_a_hydra_app_through_the_queue(tmp_path: Path, xp: Callable[..., Result]) -> None:
    project = example_project("hydra-toy", tmp_path, xp)
    submitted = xp("submit", "experiments/hydra/01_sweep.xp.toml", "--param", "model=wide",
                   "--param", "optimizer.lr=0.05", "--param", "trainer.epochs=2", cwd=project)  # fmt: skip
    assert submitted.returncode == 0, submitted.output
    worked = xp("worker", "--once", cwd=project)
    assert worked.returncode == 0, worked.output
    (run,) = runs_of(project / "runs")
    assert read_run(run)["status"] == "finished", (run / "output.log").read_text()
    assert read_run(run)["params"]["trainer.epochs"] == 2  # type: ignore[index]
    composed = config_of(run)
    assert composed["optimizer"]["lr"] == 0.05 and composed["trainer"]["epochs"] == 2  # type: ignore[index]
    assert "model=wide lr=0.05" in (run / "output.log").read_text()


def test_a_lightning_cli_script_runs_as_it_is(tmp_path: Path, xp: Callable[..., Result]) -> None:
    pytest.importorskip("lightning")
    project = example_project("lightning-toy", tmp_path, xp)
    result = xp("run", "experiments/lightning/01_lr.xp.toml", cwd=project)
    assert result.returncode == 0, result.output
    runs = runs_of(project / "runs")
    assert [read_run(r)["params"] for r in runs] == [
        {"model.lr": 0.05, "lr": 0.05, "model.hidden": 8},
        {"model.lr": 0.2, "lr": 0.2, "model.hidden": 8},
    ]
    composed = config_of(runs[1])  # LightningCLI's saved config.yaml
    assert composed["model"] == {"hidden": 8, "lr": 0.2}
    assert composed["trainer"]["max_epochs"] == 2 and "default_root_dir" not in composed["trainer"]  # type: ignore[index]
    assert (runs[1] / "metrics.jsonl").read_text().count('"loss"') == 8  # 2 epochs × 4 batches
    diff = xp("diff", "lit001/1", "lit001/2", cwd=project)
    config_part = diff.stdout.split("params")[0]
    assert "model.lr: 0.05 → 0.2" in config_part and config_part.count("~") == 1, diff.stdout


@pytest.mark.parametrize(
    ("lines", "args", "message"),
    [
        ('app = "hydar"\ncommand = "python train.py"\n', [],
         "'app' must be one of hydra, lightning, got 'hydar'"),
        ('app = "hydra"\ncommand = "python train.py"\n[config]\nlr = 1\n', [],
         "a hydra app composes its own config: remove 'config' (or 'app')"),
        ('app = "hydra"\ncommand = "python train.py"\n', ["--set", "optimizer.lr=1"],
         "runs a hydra app, which composes its own config; pass overrides with --param"),
    ],
    ids=["unknown-app", "app-and-config", "set-with-app"],
)  # fmt: skip
def test_bad_app_experiments(
    git_project: Path, xp: Callable[..., Result], lines: str, args: list[str], message: str
) -> None:
    path = git_project / "experiments" / "toy" / "09_app.xp.toml"
    path.write_text('id = "app009"\n' + lines)
    result = xp("run", str(path.relative_to(git_project)), *args, cwd=git_project)
    assert result.returncode == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output and not runs_of(git_project / "runs")


def test_an_app_that_saves_no_config_keeps_its_params(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    path = git_project / "experiments" / "toy" / "09_app.xp.toml"
    path.write_text('id = "app009"\napp = "hydra"\ncommand = "true"\n[grid]\n"a.b" = [1]\n')
    result = xp("run", str(path.relative_to(git_project)), cwd=git_project)
    assert result.returncode == 0, result.output
    assert "the hydra program saved no config in its run directory" in result.stderr
    (run,) = runs_of(git_project / "runs")
    assert config_of(run) == {"a.b": 1}
