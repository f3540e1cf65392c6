from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from xpkit.config import paths
from xpkit.config.files import load_config
from xpkit.errors import ConfigError
from xpkit.experiment import load_experiment


def test_yaml_uses_yaml_1_2_semantics(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  nesterov: no\n  on: true\nname: '18'\n")
    assert load_config(path) == {
        "optim": {"lr": 0.001, "nesterov": "no", "on": True},
        "name": "18",
    }


def test_json_and_toml_configs(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"model": {"depth": 18}}')
    (tmp_path / "c.toml").write_text("[model]\ndepth = 18\n")
    assert load_config(tmp_path / "c.json") == load_config(tmp_path / "c.toml")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.yaml", "model:\n  depth: 18\n  width: [1, 2\n", r"c.yaml:\d+:\d+: invalid YAML"),
        ("c.yaml", "a: 1\na: 2\n", r"c.yaml:2:1: invalid YAML.*duplicate"),
        ("c.json", '{"model": {"depth": 18,}}', r"c.json:1:24: invalid JSON.*line 1, column 24"),
        ("c.toml", "[model]\ndepth = = 1\n", r"c.toml: invalid TOML.*line 2"),
        ("c.yaml", "- 1\n- 2\n", r"top level of a config must be a mapping"),
        ("c.ini", "x", r"unknown config format"),
    ],
    ids=["yaml-syntax", "yaml-duplicate", "json", "toml", "not-mapping", "suffix"],
)
def test_malformed_configs_name_file_line_and_column(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_paths_get_set_and_flatten() -> None:
    tree = {"model": {"layers": [{"dim": 4}, {"dim": 8}]}, "lr": 0.1}
    assert paths.get(tree, "model.layers[1].dim") == 8
    assert paths.get(tree, "model.layers.0.dim") == 4
    paths.set_existing(tree, "model.layers[0].dim", 16)
    assert tree["model"]["layers"][0]["dim"] == 16  # type: ignore[index]
    with pytest.raises(paths.PathError, match="no 'depth' under 'model'"):
        paths.set_existing(tree, "model.depth", 3)
    assert dict(paths.flatten(tree)) == {
        "model.layers[0].dim": 16, "model.layers[1].dim": 8, "lr": 0.1,
    }  # fmt: skip


def write_experiment(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "01_cfg.xp.toml"
    path.write_text(textwrap.dedent(body))
    return path


def test_experiment_config_table_grid_paths_and_sets(tmp_path: Path) -> None:
    path = write_experiment(
        tmp_path,
        """
        id = "cfg001"
        command = "python train.py --config {config} --seed {seed}"
        [grid]
        seed = [0]
        "model.depth" = [18, 34]
        [config]
        model = {depth = 10, dim = 64, name = "net-${model.depth}"}
        optim = {lr = 0.1}
        """,
    )
    specs = load_experiment(path).expand(sets={"optim.lr": 0.001})
    assert [s.config["model"]["depth"] for s in specs] == [18, 34]  # type: ignore[index]
    assert specs[1].config["model"]["name"] == "net-34"  # type: ignore[index]
    assert specs[0].config["optim"]["lr"] == 0.001  # type: ignore[index]
    assert specs[0].params == {"seed": 0, "model.depth": 18, "optim.lr": 0.001}
    assert specs[0].slug == "cfg-depth18"
    assert specs[0].command == 'python train.py --config "$XP_CONFIG" --seed 0'


def test_experiment_config_file_is_relative_to_the_project(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("optim:\n  lr: 1e-3\n")
    sub = tmp_path / "experiments"
    sub.mkdir()
    path = sub / "01_file.xp.toml"
    path.write_text('id = "cfg002"\ncommand = "x"\nconfig = "configs/base.yaml"\n')
    (spec,) = load_experiment(path, tmp_path).expand()
    assert spec.config == {"optim": {"lr": 0.001}}


@pytest.mark.parametrize(
    ("body", "sets", "message"),
    [
        (
            '[config]\nmodel = {depth = 1}\n[grid]\n"model.width" = [1, 2]\n',
            {},
            r"cannot set 'model.width'.*no 'width' under 'model'",
        ),
        ("[config]\nmodel = {depth = 1}\n", {"optim.lr": 0.1}, r"cannot set 'optim.lr'"),
        (
            '[grid]\n"model.depth" = [1]\n',
            {},
            r"'model.depth' sets a config value, but this experiment has no config",
        ),
        ('config = "missing.yaml"\n', {}, r"config file 'missing.yaml' not found"),
        ("config = 3\n", {}, r"'config' must be a table or a file path"),
        ("[grid]\nconfig = [1]\n", {}, r"'config' is reserved"),
    ],
    ids=["grid-path", "set-path", "no-config", "missing-file", "config-type", "reserved"],
)
def test_bad_experiment_configs(
    tmp_path: Path, body: str, sets: dict[str, object], message: str
) -> None:
    path = write_experiment(tmp_path, 'id = "cfg003"\ncommand = "x"\n' + body)
    with pytest.raises(ConfigError, match=message):
        load_experiment(path, tmp_path).expand(sets=sets)
