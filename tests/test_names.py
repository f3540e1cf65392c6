from __future__ import annotations

from pathlib import Path

import pytest

from xpkit import names


def test_experiment_ids_are_six_chars_and_avoid_taken() -> None:
    taken = {names.new_experiment_id() for _ in range(50)}
    fresh = names.new_experiment_id(taken)
    assert names.ID_PATTERN.match(fresh)
    assert fresh not in taken


def test_command_id_is_deterministic_and_ignores_spacing() -> None:
    a = names.command_experiment_id(["python", "train.py", "--lr", "0.1"])
    b = names.command_experiment_id(["python", "train.py", "--lr", "0.1"])
    c = names.command_experiment_id(["python", "train.py", "--lr", "0.2"])
    assert a == b != c
    assert names.ID_PATTERN.match(a)


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("resnet18 lr=0.1", "resnet18-lr-0.1"),
        ("a/b\\c", "a-b-c"),
        ("", "run"),
        ("--weird--", "weird"),
    ],
    ids=["spaces", "slashes", "empty", "dashes"],
)
def test_slugify(text: str, slug: str) -> None:
    assert names.slugify(text) == slug


def test_params_slug() -> None:
    assert names.params_slug("resnet18", {"lr": 0.1, "seed": 2}) == "resnet18-lr0.1-seed2"


def test_parse_run_name_roundtrip() -> None:
    name = names.run_name("k3j9x2", 4, "resnet18-lr0.1")
    assert name == "k3j9x2_004_resnet18-lr0.1"
    parsed = names.parse_run_name(name)
    assert parsed == names.ParsedName("k3j9x2", 4, "resnet18-lr0.1")
    assert names.parse_run_name("not-a-run") is None
    assert names.parse_run_name("k3j9x2_1234_x").trial == 1234  # type: ignore[union-attr]


def test_trials_are_consecutive_and_continue_after_existing_runs(tmp_path: Path) -> None:
    (tmp_path / "k3j9x2_007_old").mkdir()
    trials = [names.allocate_trial(tmp_path, "k3j9x2") for _ in range(3)]
    assert trials == [8, 9, 10]
    assert names.allocate_trial(tmp_path, "other1") == 1
