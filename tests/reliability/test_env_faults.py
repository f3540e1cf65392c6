"""kill -9 of whatever builds or removes a run's Python environment, at seeded random
moments: `xp env build`, a worker building for a queued run, `xp env gc`."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, git
from conftest import read_run as info
from reliability.conftest import iterations
from wheels import make_wheel, served_index

pytestmark = pytest.mark.integration


def complete_or_absent(envs: Path) -> list[str]:
    """Every environment folder a run would use is whole: its manifest lists what its
    interpreter has. Returns their keys."""
    keys = []
    for folder in sorted(envs.iterdir()) if envs.is_dir() else ():
        if folder.name.startswith("."):
            continue
        manifest = json.loads((folder / "xp-env.json").read_text())  # missing: a broken env
        shown = subprocess.run([folder / "bin" / "python", "-c", "import xptoy; print(xptoy.__version__)"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        assert manifest["packages"] == [f"xptoy=={shown.stdout.strip()}"]
        keys.append(folder.name)
    return keys


@pytest.fixture
def slow_project(git_project: Path, tmp_path: Path) -> Path:
    make_wheel(tmp_path / "wheels", "xptoy", "1.0")
    (git_project / "toy.py").write_text("import xptoy\nprint('TOY', xptoy.__version__)\n")
    (git_project / "requirements.txt").write_text("xptoy==1.0\n")
    git(git_project, "add", "-A")
    git(git_project, "commit", "-q", "-m", "toy")
    return git_project


def _use_index(root: Path, url: str) -> None:
    (root / "xp.toml").write_text(
        f'runs = "runs"\nlink = []\nenv = {{ requirements = "requirements.txt", '
        f'index_url = "{url}" }}\n'
    )
    git(root, "commit", "-q", "-am", "index") if git(root, "status", "--short") else None


def test_kill9_of_builders_at_random_moments(
    slow_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 of `xp env build` or of an `xp worker` building for its queued run,
    at a random moment of the build (0.2-1.2 s, the wheel served after 0.4 s; seeded;
    6 times, soak: 40).
    Promise: no environment folder is ever incomplete (each has its manifest and exactly
    the packages it lists); the next build removes what killed ones left, and the queued
    run then runs in the environment."""
    envs = tmp_path / "cache" / "envs"
    rng = random.Random(2121)
    interrupted = 0  # kills that left a build half-made: the fault did happen
    with served_index(tmp_path / "wheels", tmp_path / "index", delay=0.4) as url:
        _use_index(slow_project, url)
        for attempt in range(iterations(6, 40)):
            for folder in [*envs.glob("[!.]*"), envs / ".uv-cache"]:  # nothing built or cached
                subprocess.run(["rm", "-rf", str(folder)], check=True)
            args = ["env", "build"] if attempt % 2 == 0 else ["worker", "--once"]
            if args[0] == "worker":
                assert xp("submit", "--", "python", "toy.py", cwd=slow_project).returncode == 0
            proc = subprocess.Popen([*XP, *args], cwd=slow_project, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            time.sleep(rng.uniform(0.2, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            complete_or_absent(envs)
            interrupted += bool(list(envs.glob(".building-*")))
        assert interrupted > 0
        time.sleep(0.5)  # a uv child of the last builder has died with it
        (tmp_path / "index" / "delay").write_text("0")
        (last,) = xp("submit", "--", "python", "toy.py", cwd=slow_project).stdout.split()
        worker = xp("worker", "--once", cwd=slow_project, timeout=120)
    assert worker.returncode == 0, worker.output
    (key,) = complete_or_absent(envs)
    assert not list(envs.glob(".building-*"))
    run = slow_project / "runs" / last
    assert info(run)["status"] == "finished", worker.output
    assert "TOY 1.0" in (run / "output.log").read_text()
    assert json.loads((run / "env.json").read_text())["environment"]["key"] == key


def test_kill9_of_env_gc_at_random_moments(
    slow_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """Fault: kill -9 of `xp env gc` while it removes environments (0-0.4 s; seeded;
    4 times, soak: 40).
    Promise: an environment is whole or gone, never half-removed under its name; the next
    gc finishes the removal and a run rebuilds what it needs."""
    envs = tmp_path / "cache" / "envs"
    rng = random.Random(77)
    with served_index(tmp_path / "wheels", tmp_path / "index") as url:
        _use_index(slow_project, url)
        for _ in range(iterations(4, 40)):
            assert xp("env", "build", cwd=slow_project).returncode == 0
            proc = subprocess.Popen([*XP, "env", "gc", "--keep", "0", "--older-than", "0s"],
                                    cwd=slow_project, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(rng.uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            complete_or_absent(envs)
        gc = xp("env", "gc", "--keep", "0", "--older-than", "0s", cwd=slow_project)
        assert gc.returncode == 0, gc.output
        assert complete_or_absent(envs) == [] and not list(envs.glob(".removing-*"))
        run = xp("run", "--", "python", "toy.py", cwd=slow_project)
    assert run.returncode == 0, run.output
    assert len(complete_or_absent(envs)) == 1
