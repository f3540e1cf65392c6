"""xp rm and the trash: nothing lost, restore byte-identical, only `empty` deletes."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, runs_of

pytestmark = pytest.mark.integration


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def three_runs(git_project: Path, xp: Callable[..., Result]) -> list[str]:
    for code in ("pass", "pass", "import sys; sys.exit(1)"):
        xp("run", "--", "python", "-c", code, cwd=git_project)
    return [p.name for p in runs_of(git_project / "runs")]


def test_rm_then_restore_is_byte_identical(
    git_project: Path, three_runs: list[str], xp: Callable[..., Result]
) -> None:
    runs_root = git_project / "runs"
    name = three_runs[0]
    before = digest(runs_root / name)
    result = xp("rm", name, "--reason", "bad seed", "--yes", cwd=git_project)
    assert result.returncode == 0 and "moved 1 run(s)" in result.stdout
    assert name not in xp("ls", cwd=git_project).stdout
    listing = xp("trash", "ls", cwd=git_project).stdout
    assert name in listing and "bad seed" in listing
    assert xp("trash", "restore", name, cwd=git_project).returncode == 0
    assert digest(runs_root / name) == before
    assert name in xp("ls", cwd=git_project).stdout


def test_rm_by_status_asks_first(
    git_project: Path, three_runs: list[str], xp: Callable[..., Result]
) -> None:
    import subprocess
    import sys

    from conftest import XP

    answer = subprocess.run([*XP, "rm", "--status", "failed"], cwd=git_project, input="n\n",
                            capture_output=True, text=True)  # fmt: skip
    assert "nothing moved" in answer.stdout and len(runs_of(git_project / "runs")) == 3
    assert xp("rm", "--status", "failed", "--yes", cwd=git_project).returncode == 0
    left = runs_of(git_project / "runs")
    assert len(left) == 2 and all(
        json.loads((p / "run.json").read_text())["status"] == "finished" for p in left
    )
    assert sys.executable  # the real CLI ran


def test_empty_older_than_removes_only_old_ones(
    git_project: Path, three_runs: list[str], xp: Callable[..., Result]
) -> None:
    assert xp("rm", three_runs[0], three_runs[1], "--yes", cwd=git_project).returncode == 0
    trash = git_project / "runs" / ".xp" / "trash"
    meta = trash / f"{three_runs[0]}.trash.json"
    old = json.loads(meta.read_text())
    meta.write_text(json.dumps({**old, "trashed": time.time() - 40 * 86400}))
    result = xp("trash", "empty", "--older-than", "30d", "--yes", cwd=git_project)
    assert result.returncode == 0 and "deleted 1 run(s)" in result.stdout
    assert not (trash / three_runs[0]).exists() and (trash / three_runs[1]).is_dir()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["rm", "nope", "--yes"], "no run matches 'nope'"),
        (["rm", "--older-than", "soon", "--status", "failed", "--yes"], "is not a duration"),
        (["trash", "restore", "zzz"], "no run matches 'zzz'"),
    ],
    ids=["no-match", "bad-age", "restore-unknown"],
)
def test_bad_input(
    git_project: Path,
    three_runs: list[str],
    xp: Callable[..., Result],
    args: list[str],
    fragment: str,
) -> None:
    result = xp(*args, cwd=git_project)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.output
    assert len(runs_of(git_project / "runs")) == 3  # nothing moved or deleted


def test_ambiguous_rm_and_restore_onto_an_existing_name(
    git_project: Path, three_runs: list[str], xp: Callable[..., Result]
) -> None:
    prefix = next(n[:6] for n in three_runs if sum(m.startswith(n[:6]) for m in three_runs) == 2)
    ambiguous = xp("rm", prefix, "--yes", cwd=git_project)
    assert ambiguous.returncode == 2 and "matches 2 runs" in ambiguous.stderr
    name = three_runs[0]
    assert xp("rm", name, "--yes", cwd=git_project).returncode == 0
    (git_project / "runs" / name).mkdir()  # a new run took the name meanwhile
    refused = xp("trash", "restore", name, cwd=git_project)
    assert refused.returncode == 2 and "a run of that name exists" in refused.stderr
    assert (git_project / "runs" / ".xp" / "trash" / name).is_dir()
