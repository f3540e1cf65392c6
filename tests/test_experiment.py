from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from xpkit.errors import ConfigError
from xpkit.experiment import load_experiment, render_command


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "01_exp.xp.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_grid_and_runs_expand_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id = "abc123"
        command = "python t.py --lr {lr} --seed {seed} --opt {opt}"
        [grid]
        lr = [0.1, 0.01]
        seed = [0, 1]
        opt = "sgd"
        [[runs]]
        lr = 0.5
        seed = 9
        """,
    )
    exp = load_experiment(path)
    assert exp.name == "exp"
    specs = exp.expand()
    assert [s.params for s in specs] == [
        {"lr": 0.1, "seed": 0, "opt": "sgd"},
        {"lr": 0.1, "seed": 1, "opt": "sgd"},
        {"lr": 0.01, "seed": 0, "opt": "sgd"},
        {"lr": 0.01, "seed": 1, "opt": "sgd"},
        {"opt": "sgd", "lr": 0.5, "seed": 9},
    ]
    assert specs[0].command == "python t.py --lr 0.1 --seed 0 --opt sgd"
    assert specs[0].slug == "exp-lr0.1-seed0"  # only the params that vary


def test_overrides_replace_grid_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id = "abc123"
        command = "python t.py --lr {lr} --seed {seed}"
        [grid]
        lr = [0.1, 0.01]
        seed = [0, 1]
        """,
    )
    specs = load_experiment(path).expand({"seed": 7})
    assert [s.params["seed"] for s in specs] == [7, 7]


def test_values_are_shell_quoted() -> None:
    assert render_command("echo {msg}", {"msg": "a b; rm -rf /"}) == "echo 'a b; rm -rf /'"
    assert render_command("t --lr {lr:.2e}", {"lr": 0.001}) == "t --lr 1.00e-03"


BAD_FILES = [
    ('id = "abc123"\ncommand = "x\n', r"invalid TOML.*line 2", "toml-syntax"),
    ('id = "abc123"\ncommand = "x"\nfoo = 1\n', r":3: unknown field 'foo'.*Valid fields", "unknown-field"),
    ('id = "abc123"\ncommand = "x"\ngpus = "two"\n', r":3: 'gpus' must be an integer", "wrong-type"),
    ('id = "ABC"\ncommand = "x"\n', r":1: 'id' must be 6 characters", "bad-id"),
    ('command = "x"\n', r"required field 'id' is missing", "missing-id"),
    ('id = "abc123"\ncommand = "t {lr} {seed}"\n[grid]\nlr = [1]\n', r"uses \{seed\}.*no value", "placeholder"),
    ('id = "abc123"\ncommand = "t {lr}"\n[grid]\nlr = [[1, 2]]\n', r"grid.lr\[0\] is list.*must be scalars", "non-scalar"),
    ('id = "abc123"\ncommand = "t {lr}"\n[grid]\nlr = []\n', r"grid.lr is an empty list", "empty-grid"),
    ('id = "abc123"\ncommand = "t {lr"\n', r"command template .* is invalid", "bad-template"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"), [b[:2] for b in BAD_FILES], ids=[b[2] for b in BAD_FILES]
)
def test_bad_experiment_files(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "01_bad.xp.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_experiment(path).expand()


def test_missing_file_suggests_xp_new(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="xp new"):
        load_experiment(tmp_path / "nope.xp.toml")
