"""A project with real runs and a real `xp ui` serving it, for the dashboard tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import XP, Result, git

MANY_POINTS = 100_000
TOKEN = "test-token-0123456789"  # XP_UI_TOKEN of the dashboards these tests start
AUTH = {"Authorization": f"Bearer {TOKEN}"}
XSS = "<script>alert(1)</script>"

MANY_PY = textwrap.dedent(
    f"""\
    import math
    import xpkit as xp
    run = xp.init(config={{"model": {{"width": 64}}, "note": "{XSS}"}})
    for step in range({MANY_POINTS}):
        run.log({{"wave": math.sin(step / 500) + (10.0 if step == 77_777 else 0.0)}}, step=step)
    print("{XSS}")
    """
)


@pytest.fixture
def ui_project(git_project: Path, xp: Callable[..., Result]) -> Path:
    """Two runs of an experiment (lr 0.1 and 0.01, 5 steps each) and one run with
    100,000 points of a metric with a single spike, tagged with markup."""
    (git_project / "many.py").write_text(MANY_PY)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-q", "-m", "many")
    assert xp("run", "experiments/toy/01_base.xp.toml", cwd=git_project).returncode == 0
    result = xp("run", "--name", "many", "--tag", XSS, "--", "python", "many.py", cwd=git_project)
    assert result.returncode == 0, result.output
    return git_project


def start_ui(
    project: Path, *args: str, token: str | None = TOKEN
) -> tuple[subprocess.Popen[str], str]:
    """`xp ui --port 0` in `project` (token TOKEN; None: its own random one); returns
    the process and the URL it printed."""
    env = {**os.environ, "XP_UI_TOKEN": token} if token else os.environ.copy()
    proc = subprocess.Popen(
        [*XP, "ui", "--port", "0", *args], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.kill()
        raise AssertionError(
            f"xp ui printed {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, match[1]


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def ui_url(ui_project: Path) -> Iterator[str]:
    proc, url = start_ui(ui_project)
    try:
        yield url.split("?")[0].rstrip("/")
    finally:
        stop(proc)


def run_names(project: Path) -> dict[str, str]:
    """Run names by what they are: 'lr0.1', 'lr0.01', 'many'."""
    names = {}
    for path in (project / "runs").iterdir():
        if path.name.startswith("."):
            continue
        key = "many" if "many" in path.name else ("lr0.01" if "lr0.01" in path.name else "lr0.1")
        names[key] = path.name
    return names
