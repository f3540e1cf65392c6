"""Every message leads somewhere: what was asked, what happened, what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, read_run, runs_of, wait_for

pytestmark = pytest.mark.integration
EXP = "experiments/toy/01_base.xp.toml"


@pytest.fixture
def swept(git_project: Path, xp: Callable[..., Result]) -> Path:
    assert xp("run", EXP, cwd=git_project).returncode == 0
    return git_project


NOTHING_MATCHED = [
    (["rm", "--status", "failed", "--older-than", "30d", "--yes"], 0,
     "no run matches --status failed --older-than 30d: nothing moved"),
    (["cancel", "--all-queued"], 0, "nothing queued or running to cancel"),
    (["cancel", "abc123"], 0, "nothing queued or running to cancel in abc123"),
    (["rm", "--yes"], 2, "nothing to remove: give runs, --exp, --status or --older-than"),
    (["rerun", "abc123/1", "--check"], 2, "nothing to reproduce"),
    (["schema", "modles:Net"], 2, "did you mean models"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    NOTHING_MATCHED,
    ids=["rm-no-match", "cancel-empty-queue", "cancel-experiment", "rm-nothing-given",
         "rerun-check-nothing", "schema-project-module"],
)  # fmt: skip
def test_messages_say_what_happened(
    swept: Path, xp: Callable[..., Result], args: list[str], code: int, fragment: str
) -> None:
    (swept / "models.py").write_text(
        "class Net:\n    def __init__(self, width: int) -> None: ...\n"
    )
    if args[0] == "rerun":  # a run that has no summary metric: nothing to compare
        (runs_of(swept / "runs")[0] / "summary.json").write_text("{}")
    before = [r.name for r in runs_of(swept / "runs")]
    result = xp(*args, cwd=swept)
    assert result.returncode == code, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert [r.name for r in runs_of(swept / "runs")] == before  # nothing moved or added


def test_init_outside_git_says_what_to_do(tmp_path: Path, xp: Callable[..., Result]) -> None:
    result = xp("init", cwd=tmp_path)
    assert result.returncode == 2 and "git init" in result.stderr
    assert "pass --no-git" not in result.stderr  # xp init has no such option


def test_reid_of_a_file_with_runs_warns_and_asks(swept: Path) -> None:
    path = swept / EXP
    asked = subprocess.run([*XP, "new", "--reid", EXP], cwd=swept, input="n\n", text=True,
                           capture_output=True)  # fmt: skip
    assert (
        "made 2 run(s) under its current ID" in asked.stderr and "nothing changed" in asked.stdout
    )
    assert 'id = "abc123"' in path.read_text()
    forced = subprocess.run([*XP, "new", "--reid", EXP, "--yes"], cwd=swept, text=True,
                            capture_output=True)  # fmt: skip
    assert forced.returncode == 0 and 'id = "abc123"' not in path.read_text()


def test_a_cancelled_run_is_recorded_cancelled_and_by_whom(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    proc = subprocess.Popen([*XP, "run", "--", "python", "-c", "import time; time.sleep(60)"],
                            cwd=git_project, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    runs = git_project / "runs"
    wait_for(lambda: bool(runs_of(runs)) and read_run(runs_of(runs)[0])["status"] == "running")
    (run,) = runs_of(runs)
    assert xp("cancel", run.name, cwd=git_project).returncode == 0
    proc.wait(timeout=60)
    info = read_run(run)
    assert info["status"] == "cancelled", info
    assert (
        info["reason"].startswith("cancelled (xp cancel by ")
        and "interrupted" not in info["reason"]
    )


def test_backups_of_one_second_get_distinct_names(
    swept: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    dest = tmp_path / "backups"
    for _ in range(3):  # well within one second each: "exists already" before
        result = xp("backup", str(dest), cwd=swept)
        assert result.returncode == 0, result.output
    names = sorted(p.name for p in dest.iterdir() if not p.name.startswith("."))
    assert len(names) == 3
    assert xp("backup", str(dest), "--verify", cwd=swept).returncode == 0


def test_the_fake_nvidia_smi_installs_itself_and_a_script_without_a_shebang_is_named(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    folder = tmp_path / "fake"
    done = subprocess.run([sys.executable, "-m", "xpkit.capture.fake_smi", "--install",
                           str(folder)], capture_output=True, text=True, check=True)  # fmt: skip
    assert "export PATH=" in done.stdout and (folder / "nvidia-smi").read_text().startswith("#!")
    env = {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "XP_GPU_PROBE": "nvidia-smi",
           "XP_FAKE_GPUS": str(folder / "gpus.json")}  # fmt: skip
    status = xp("worker", "--once", cwd=git_project, env=env)
    assert "4 GPU(s)" in status.stdout, status.output
    (folder / "nvidia-smi").write_text(f'exec {sys.executable} -m xpkit.capture.fake_smi "$@"\n')
    broken = xp("worker", "--once", cwd=git_project, env=env)
    assert "Exec format error" in broken.stderr and "#!/bin/sh" in broken.stderr
    assert json.loads((folder / "gpus.json").read_text())["gpus"]
