from __future__ import annotations

import os
import time
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


def _settle(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_parsed_xp_toml_is_cached_and_every_edit_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xp.toml's parse is cached (no tomllib on a run's start-up), keyed by the file's
    size, inode and times: an edit of the same size, even one that puts the same
    modification time back, is read; an edit that breaks it is reported."""
    monkeypatch.setenv("XP_CACHE_DIR", str(tmp_path / "cache"))
    project = tmp_path / "p"
    project.mkdir()
    config = project / "xp.toml"
    config.write_text('runs = "aa"\n')
    assert load_settings(project).runs.name == "aa"
    assert not (tmp_path / "cache" / "toml").exists()  # just written: not cached yet
    _settle(config, 3600)
    assert load_settings(project).runs.name == "aa"
    assert len(list((tmp_path / "cache" / "toml").iterdir())) == 1
    assert load_settings(project).runs.name == "aa"  # from the cache
    before = config.stat()
    config.write_text('runs = "bb"\n')  # same size
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime too
    assert load_settings(project).runs.name == "bb"
    _settle(config, 1800)
    assert load_settings(project).runs.name == "bb"
    config.write_text('runs = "cc\n')
    _settle(config, 600)
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(project)


def test_a_toml_cache_that_cannot_be_written_or_read_is_passed_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XP_CACHE_DIR", str(cache))
    (tmp_path / "xp.toml").write_text('runs = "r"\n[hooks.x]\ntype = "webhook"\n')
    _settle(tmp_path / "xp.toml", 3600)
    assert load_settings(tmp_path).runs.name == "r"
    monkeypatch.setenv("XP_CACHE_DIR", str(tmp_path / "cache2"))
    assert load_settings(tmp_path).hooks == {"x": {"type": "webhook"}}
    for kept in (tmp_path / "cache2" / "toml").iterdir():
        kept.write_text("{not json")
    assert load_settings(tmp_path).hooks == {"x": {"type": "webhook"}}
