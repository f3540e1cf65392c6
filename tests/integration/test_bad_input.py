"""Every bad input: a clear one-paragraph message, exit code 2, no traceback,
and no half-made run left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration


def visible_runs(runs_root: Path) -> list[Path]:
    if not runs_root.exists():
        return []
    return [p for p in runs_root.iterdir() if not p.name.startswith(".")]


def assert_clean_error(result: Result, *fragments: str) -> None:
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[-1].startswith("xp: error: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_not_a_git_repository(tmp_path: Path, xp: Callable[..., Result]) -> None:
    (tmp_path / "lonely").mkdir()
    result = xp("run", "--", "echo", "hi", cwd=tmp_path / "lonely")
    assert_clean_error(result, "not inside a git repository", "--no-git")
    assert visible_runs(tmp_path / "lonely" / "runs") == []


def test_no_git_runs_without_provenance(tmp_path: Path, xp: Callable[..., Result]) -> None:
    folder = tmp_path / "lonely"
    folder.mkdir()
    result = xp("run", "--no-git", "--", "echo", "hi", cwd=folder)
    assert result.returncode == 0, result.output
    (run,) = visible_runs(folder / "runs")
    assert json.loads((run / rd.GIT_JSON).read_text()) == {"provenance": "none (--no-git)"}
    assert "hi" in (run / rd.OUTPUT_LOG).read_text()


BAD_EXPERIMENTS = [
    ('id = "bad000"\ncommand = "python train.py\n', ["01_bad.xp.toml", "invalid TOML", "line 2"]),
    ('id = "bad000"\ncommand = "x"\ngrdi = {}\n', ["01_bad.xp.toml:3", "unknown field 'grdi'"]),
    ('id = "bad000"\ncommand = "x"\ntags = "a"\n', ["01_bad.xp.toml:3", "'tags' must be a list"]),
    ('id = "bad000"\ncommand = "t {lr} {bs}"\n[grid]\nlr = [1]\n', ["{bs}", "Add it to [grid]"]),
    ('id = "bad000"\ncommand = "t {lr}"\n[grid]\nlr = [{a = 1}]\n', ["grid.lr[0]", "scalars"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "fragments"), BAD_EXPERIMENTS,
    ids=["toml-syntax", "unknown-field", "wrong-type", "placeholder", "non-scalar"],
)  # fmt: skip
def test_bad_experiment_file(
    git_project: Path, runs_root: Path, xp: Callable[..., Result], body: str, fragments: list[str]
) -> None:
    path = git_project / "experiments" / "toy" / "01_bad.xp.toml"
    path.write_text(body)
    result = xp("run", str(path.relative_to(git_project)), cwd=git_project)
    assert_clean_error(result, *fragments)
    assert visible_runs(runs_root) == []


def test_missing_experiment_file(git_project: Path, xp: Callable[..., Result]) -> None:
    assert_clean_error(xp("run", "experiments/nope.xp.toml", cwd=git_project), "does not exist")


def test_command_not_found_creates_no_run(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp("run", "--", "pythn", "train.py", cwd=git_project)
    assert_clean_error(result, "command not found: 'pythn'", "no run was created")
    assert result.returncode == 2 and visible_runs(runs_root) == []


def test_missing_script_in_experiment_command(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    path = git_project / "experiments" / "toy" / "02_sh.xp.toml"
    path.write_text('id = "shsh00"\ncommand = "./missing.sh {x}"\n[grid]\nx = [1, 2]\n')
    result = xp("run", "experiments/toy/02_sh.xp.toml", cwd=git_project)
    assert_clean_error(result, "command not found: './missing.sh'")
    assert len(visible_runs(runs_root)) == 1  # the sweep stops at the first


def test_runs_root_not_writable(git_project: Path, xp: Callable[..., Result]) -> None:
    (git_project / "afile").write_text("not a folder")
    result = xp(
        "run",
        "--",
        "echo",
        "hi",
        cwd=git_project,
        env={"XP_RUNS": str(git_project / "afile" / "runs")},
    )
    assert_clean_error(result, "is not a folder", "XP_RUNS")


def test_corrupt_run_json_is_skipped_by_ls(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    assert xp("run", "--", "echo", "hi", cwd=git_project).returncode == 0
    bad = runs_root / "zzz999_001_broken"
    bad.mkdir()
    (bad / rd.RUN_JSON).write_text('{"name": "zzz999_001_bro')
    result = xp("ls", cwd=git_project)
    assert result.returncode == 0
    assert "skipped run zzz999_001_broken" in result.stderr and "corrupt" in result.stderr
    assert "echo" in result.stdout or "_001_" in result.stdout


def test_copied_experiment_file_is_detected(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    original = git_project / "experiments" / "toy" / "01_base.xp.toml"
    copy = git_project / "experiments" / "toy" / "02_copy.xp.toml"
    shutil.copy(original, copy)
    result = xp("run", "experiments/toy/02_copy.xp.toml", cwd=git_project)
    assert_clean_error(result, "'abc123' is used by two files", "01_base.xp.toml",
                       "02_copy.xp.toml", "xp new --reid")  # fmt: skip
    assert visible_runs(runs_root) == []
    fixed = xp("new", "--reid", "experiments/toy/02_copy.xp.toml", cwd=git_project)
    assert fixed.returncode == 0
    assert (
        xp("run", "experiments/toy/02_copy.xp.toml", "--dry-run", cwd=git_project).returncode == 0
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "--param", "lr", "--", "true"], ["--param 'lr'", "KEY=VALUE"]),
        (["ls", "--where", "lr"], ["--where 'lr'", "KEY OP VALUE"]),
        (["ls", "--exp", "x"], ["--exp 'x'", "6-character"]),
        (["show", "nope"], ["no run matches 'nope'"]),
        (["logs", "abc123/x"], ["TRIAL must be a number"]),
    ],
    ids=["param", "where", "exp", "show", "logs"],
)
def test_bad_options(
    git_project: Path, xp: Callable[..., Result], args: list[str], fragments: list[str]
) -> None:
    assert_clean_error(xp(*args, cwd=git_project), *fragments)


def test_unknown_option_is_a_usage_error(git_project: Path, xp: Callable[..., Result]) -> None:
    result = xp("ls", "--colour", cwd=git_project)
    assert result.returncode == 2 and "No such option" in result.stderr
    assert "Traceback" not in result.output


def test_init_new_and_copy(tmp_path: Path, xp: Callable[..., Result]) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    assert_clean_error(xp("init", cwd=root), "not inside a git repository")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    result = xp("init", cwd=root)
    assert result.returncode == 0 and "xp new" in result.stdout
    assert "/runs/" in (root / ".gitignore").read_text()
    assert_clean_error(xp("init", cwd=root), "already exists", "--force")

    made = xp("new", "experiments/cifar/01_baseline", cwd=root)
    assert made.returncode == 0, made.output
    path = root / "experiments" / "cifar" / "01_baseline.xp.toml"
    text = path.read_text()
    assert 'name = "baseline"' in text and "[grid]" in text and "# " in text
    dry = xp("run", "experiments/cifar/01_baseline.xp.toml", "--dry-run", cwd=root)
    assert dry.returncode == 0 and "6 run(s)" in dry.stdout

    copy = xp("new", "experiments/cifar/02_wider", "--from", str(path), cwd=root)
    assert copy.returncode == 0
    ids = {
        line
        for p in path.parent.iterdir()
        for line in p.read_text().splitlines()
        if line.startswith("id =")
    }
    assert len(ids) == 2
    assert_clean_error(xp("new", "experiments/cifar/01_baseline", cwd=root), "already exists")


def test_new_ids_avoid_runs_root(git_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ID only runs use (their experiment file deleted) is taken: random bytes that
    spell it first are skipped. (The random draw is forced; by chance it never collides.)"""
    from xpkit import names, scaffold
    from xpkit.settings import load_settings

    runs = git_project / "runs"
    (runs / "zzz999_001_old").mkdir(parents=True)
    settings = load_settings(git_project)
    assert {"zzz999", "abc123"} <= scaffold.taken_ids(settings)
    spell = {c: bytes([names.ID_ALPHABET.index(c)]) for c in names.ID_ALPHABET}
    draws = iter([b"".join(spell[c] for c in "zzz999"), b"".join(spell[c] for c in "abc123"),
                  b"".join(spell[c] for c in "new777")])  # fmt: skip
    monkeypatch.setattr(names.os, "urandom", lambda n: next(draws))
    target = scaffold.new_experiment(settings, git_project / "experiments" / "x" / "01_a")
    assert 'id = "new777"' in target.read_text()
