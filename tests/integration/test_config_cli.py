"""Configs in runs, `xp diff`, `xp rerun`, `xp schema`: real git, real subprocesses."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, git, runs_of
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration

MODELS = textwrap.dedent(
    """\
    from __future__ import annotations


    class Net:
        \"\"\"A toy network.\"\"\"

        def __init__(self, depth: int, width: float = 1.0):
            self.depth, self.width = depth, width


    class Optim:
        def __init__(self, lr: float, momentum: float = 0.0):
            self.lr, self.momentum = lr, momentum
    """
)
TRAIN = textwrap.dedent(
    """\
    import json, os, sys
    import xpkit as xp

    run = xp.init()
    assert os.environ["XP_CONFIG"] == sys.argv[2], (os.environ["XP_CONFIG"], sys.argv)
    with open(sys.argv[2]) as f:
        assert json.load(f) == run.config
    built = xp.build(run.config)
    net, optim = built["model"], built["optim"]
    score = net.depth * net.width * optim.lr
    run.log({"score": score})
    print("built", type(net).__name__, net.depth, optim.lr, score)
    """
)
EXPERIMENT = textwrap.dedent(
    """\
    id = "cfg123"
    name = "typed"
    command = "python train_cfg.py --config {config}"

    [grid]
    "model.depth" = [18, 34]

    [config]
    model = {_target_ = "models.Net", depth = 10, width = "${optim.lr}"}
    optim = {_target_ = "models.Optim", lr = 0.5}
    """
)


@pytest.fixture
def cfg_project(git_project: Path) -> Path:
    (git_project / "models.py").write_text(MODELS)
    (git_project / "train_cfg.py").write_text(TRAIN)
    (git_project / "experiments" / "toy" / "02_typed.xp.toml").write_text(EXPERIMENT)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "typed config")
    return git_project


def test_config_reaches_the_program_resolved(
    cfg_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp(
        "run", "experiments/toy/02_typed.xp.toml", "--set", "optim.lr=0.25", cwd=cfg_project
    )
    assert result.returncode == 0, result.output
    assert "built Net 18 0.25 1.125" in result.stdout and "built Net 34 0.25 2.125" in result.stdout
    first, second = runs_of(runs_root)
    config = json.loads((first / rd.CONFIG_JSON).read_text())
    assert config["model"] == {"_target_": "models.Net", "depth": 18, "width": 0.25}
    assert json.loads((second / rd.RUN_JSON).read_text())["params"] == {
        "model.depth": 34, "optim.lr": 0.25,
    }  # fmt: skip
    assert second.name == "cfg123_002_typed-depth34"


def test_set_values_are_json_scalars(
    cfg_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp(
        "run",
        "experiments/toy/02_typed.xp.toml",
        "--set",
        'model.width="2"',
        "--dry-run",
        cwd=cfg_project,
    )
    assert result.returncode == 0
    result = xp(
        "run",
        "experiments/toy/02_typed.xp.toml",
        "--param",
        "model.depth=3",
        "--set",
        "optim.lr=1e-3",
        cwd=cfg_project,
    )
    assert result.returncode == 0, result.output
    (run,) = runs_of(runs_root)
    assert json.loads((run / rd.CONFIG_JSON).read_text())["optim"]["lr"] == 0.001


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--set", "optim.beta=0.9"], ["cannot set 'optim.beta'", "no 'beta' under 'optim'"]),
        (["--set", "optim.lr"], ["--set 'optim.lr'", "PATH=VALUE"]),
    ],
    ids=["missing-path", "no-value"],
)
def test_bad_sets(
    cfg_project: Path,
    runs_root: Path,
    xp: Callable[..., Result],
    args: list[str],
    fragments: list[str],
) -> None:
    result = xp("run", "experiments/toy/02_typed.xp.toml", *args, cwd=cfg_project)
    assert result.returncode == 2 and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr
    assert not runs_root.exists() or runs_of(runs_root) == []


def test_set_on_an_adhoc_command_is_refused(cfg_project: Path, xp: Callable[..., Result]) -> None:
    result = xp("run", "--set", "a=1", "--", "true", cwd=cfg_project)
    assert result.returncode == 2 and "has no config to set" in result.stderr


def test_bad_config_file_is_reported_with_line_and_column(
    cfg_project: Path, xp: Callable[..., Result]
) -> None:
    (cfg_project / "bad.yaml").write_text("model:\n  depth: [1, 2\n")
    (cfg_project / "experiments" / "toy" / "03_bad.xp.toml").write_text(
        'id = "bad333"\ncommand = "true"\nconfig = "bad.yaml"\n'
    )
    result = xp("run", "experiments/toy/03_bad.xp.toml", cwd=cfg_project)
    assert result.returncode == 2 and "Traceback" not in result.output
    assert (
        "bad.yaml:" in result.stderr and "invalid YAML" in result.stderr and "line" in result.stderr
    )


def test_build_errors_in_the_program_name_paths(
    cfg_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp("run", "experiments/toy/02_typed.xp.toml", "--set", 'model.depth="deep"',
                "--set", "optim.lr=[1]", cwd=cfg_project)  # fmt: skip
    assert result.returncode == 1
    log = (runs_of(runs_root)[0] / rd.OUTPUT_LOG).read_text()
    assert "model.depth: expected int, got str 'deep'" in log
    assert "optim.lr: expected float, got list [1]" in log


def test_diff_shows_config_params_code_env_and_summary(
    cfg_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    assert (
        xp(
            "run", "experiments/toy/02_typed.xp.toml", "--param", "model.depth=2", cwd=cfg_project
        ).returncode
        == 0
    )
    (cfg_project / "models.py").write_text(MODELS + "\nEXTRA = 1\n")
    git(cfg_project, "commit", "-qam", "tweak models")
    assert (
        xp(
            "run", "experiments/toy/02_typed.xp.toml", "--param", "model.depth=4", cwd=cfg_project
        ).returncode
        == 0
    )
    result = xp("diff", "cfg123/1", "cfg123/2", cwd=cfg_project)
    assert result.returncode == 0, result.output
    text = result.stdout
    assert "\x1b[" not in text  # plain when piped
    assert "~ model.depth: 2 → 4" in text
    assert "tweak models" in text and "models.py  +2 -0" in text
    assert "environment: same" in text
    assert "score  0.5 → 1  (+0.5)" in text
    data = json.loads(xp("diff", "cfg123/1", "cfg123/2", "--json", cwd=cfg_project).stdout)
    assert data["config"]["changed"] == {"model.depth": [2, 4]}
    assert data["code"]["commits_a_to_b"][0].endswith("tweak models")
    full = xp("diff", "cfg123/1", "cfg123/2", "--code", cwd=cfg_project).stdout
    assert "+EXTRA = 1" in full


def test_diff_of_missing_or_ambiguous_runs(cfg_project: Path, xp: Callable[..., Result]) -> None:
    assert xp("run", "experiments/toy/02_typed.xp.toml", cwd=cfg_project).returncode == 0
    missing = xp("diff", "cfg123/1", "nope", cwd=cfg_project)
    assert missing.returncode == 2 and "no run matches 'nope'" in missing.stderr
    ambiguous = xp("diff", "cfg123", "cfg123/1", cwd=cfg_project)
    assert ambiguous.returncode == 2 and "matches 2 runs" in ambiguous.stderr


def test_rerun_check_reproduces_a_deterministic_run(
    cfg_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    assert (
        xp(
            "run", "experiments/toy/02_typed.xp.toml", "--param", "model.depth=7", cwd=cfg_project
        ).returncode
        == 0
    )
    (cfg_project / "models.py").write_text(
        "raise SystemExit('edited after the run')\n"
    )  # not committed
    result = xp("rerun", "cfg123/1", "--check", cwd=cfg_project)
    assert result.returncode == 0, result.output
    assert "score" in result.stdout and "reproduced" in result.stdout
    original, rerun = runs_of(runs_root)
    info = json.loads((rerun / rd.RUN_JSON).read_text())
    assert info["rerun_of"] == original.name and info["trial"] == 2
    assert info["snapshot"] == json.loads((original / rd.RUN_JSON).read_text())["snapshot"]
    assert (rerun / rd.CONFIG_JSON).read_text() == (original / rd.CONFIG_JSON).read_text()


def test_rerun_check_fails_when_a_metric_differs(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "noisy.py").write_text(
        "import os, xpkit as xp\nrun = xp.init()\nrun.log({'loss': int.from_bytes(os.urandom(4), 'big')})\n"
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "noisy")
    assert xp("run", "--", "python", "noisy.py", cwd=git_project).returncode == 0
    first = runs_of(runs_root)[0].name
    result = xp("rerun", first, "--check", cwd=git_project)
    assert result.returncode == 1
    assert "DIFFERS" in result.stdout and "not reproduced: loss" in result.stderr


def test_schema_command(cfg_project: Path, xp: Callable[..., Result]) -> None:
    result = xp("schema", "models:Net", cwd=cfg_project)
    assert result.returncode == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["properties"]["depth"] == {"type": "integer"}
    assert schema["description"] == "A toy network."
    bad = xp("schema", "models:Nett", cwd=cfg_project)
    assert bad.returncode == 2 and "close matches: Net" in bad.stderr
