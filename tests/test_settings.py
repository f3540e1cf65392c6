from __future__ import annotations

from pathlib import Path

import pytest

from xpkit.errors import ConfigError
from xpkit.settings import XP_HEARTBEAT_TIMEOUT, load_settings


def test_defaults_without_config(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    settings = load_settings(tmp_path)
    assert settings.runs == tmp_path.resolve() / "runs"
    assert settings.source is None


def test_xp_toml_is_read_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "xp.toml").write_text('runs = "out/runs"\nlink = ["data"]\nworkdir = "/tmp/w"\n')
    (tmp_path / "sub").mkdir()
    settings = load_settings(tmp_path / "sub")
    assert settings.root == tmp_path.resolve()
    assert settings.runs == tmp_path.resolve() / "out" / "runs"
    assert settings.link == ("data",)
    assert settings.workdir == Path("/tmp/w")


def test_pyproject_tool_xp(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.xp]\nruns = "r"\n')
    assert load_settings(tmp_path).runs == tmp_path.resolve() / "r"


def test_env_var_overrides_runs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "xp.toml").write_text('runs = "runs"\n')
    monkeypatch.setenv("XP_RUNS", str(tmp_path / "elsewhere"))
    assert load_settings(tmp_path).runs == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('runz = "x"\n', "unknown setting runz.*Valid settings"),
        ("link = 3\n", "'link' must be a list"),
        ("runs = 3\n", "'runs' must be a string"),
        ("runs = \n", "invalid TOML"),
    ],
    ids=["unknown", "link-type", "runs-type", "syntax"],
)
def test_bad_settings(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "xp.toml").write_text(body)
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_bad_env_var_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XP_HEARTBEAT_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="XP_HEARTBEAT_TIMEOUT='soon'"):
        XP_HEARTBEAT_TIMEOUT.get()
