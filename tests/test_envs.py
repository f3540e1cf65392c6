"""Environment specs and keys: what makes two runs share an environment, what does not,
and `env` errors in experiment files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xpkit.envspec import EnvSpec
from xpkit.errors import ConfigError
from xpkit.execute import envs
from xpkit.experiment import load_experiment

SPEC = EnvSpec(file="requirements.txt", kind="requirements", files=("requirements.txt",))


def key(spec: EnvSpec = SPEC, text: str = "numpy==2.1.0\nxptoy==1.0\n") -> str:
    return envs.env_key(spec, {"requirements.txt": text})


def test_the_key_follows_the_pins_not_their_layout() -> None:
    assert key() == key(text="numpy==2.1.0\r\nxptoy==1.0   \n\n")  # autocrlf, blanks
    assert key() != key(text="numpy==2.1.1\nxptoy==1.0\n")
    assert len(key()) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"python": "3.12"},
        {"index_url": "https://mirror.lab/simple"},
        {"extra_index_urls": ("https://extra.lab/simple",)},
        {"find_links": ("/srv/wheels",)},
        {"kind": "pyproject"},
    ],
    ids=["python", "index", "extra-index", "find-links", "kind"],
)
def test_the_key_changes_with_what_decides_the_packages(change: dict[str, object]) -> None:
    assert key(dataclasses.replace(SPEC, **change)) != key()  # type: ignore[arg-type]


def test_uv_source_settings_of_the_machine_are_part_of_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = key()
    monkeypatch.setenv("UV_INDEX_URL", "https://mirror.lab/simple")
    assert key() != before


def test_a_spec_survives_run_json() -> None:
    spec = dataclasses.replace(SPEC, python="3.11", extra_index_urls=("https://x/simple",))
    assert EnvSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('envs = "requirements.txt"', "unknown field 'envs'"),
        ("env = [1]", "'env' must be a file like"),
        ('env = { requirements = "r.txt", pyhton = "3.11" }', "did you mean 'python'"),
        ('env = { requirements = "r.txt", extra_index_urls = "ftp://x" }',
         "is not an http(s):// or file:// URL"),
        ('env = { requirements = "r.txt", no_index = "yes" }', "no_index must be true or false"),
    ],
    ids=["unknown-field", "list", "typo", "ftp", "no-index-type"],
)  # fmt: skip
def test_env_errors_in_experiment_files_name_file_and_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = tmp_path / "01_x.xp.toml"
    path.write_text(f'id = "abc123"\ncommand = "python t.py"\n{line}\n')
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert expected in str(error.value)
    assert f"{path}:3" in str(error.value)


def test_false_means_the_interpreter_running_xp(tmp_path: Path) -> None:
    path = tmp_path / "01_x.xp.toml"
    path.write_text('id = "abc123"\ncommand = "python t.py"\nenv = false\n')
    assert load_experiment(path).env is False


def test_shown_urls_carry_no_credentials() -> None:
    assert envs.shown_url("https://user:tok@mirror.lab/simple") == "https://mirror.lab/simple"
