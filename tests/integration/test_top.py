"""`xp top` on a live lab: a real `xp worker` on fake GPUs (one busy with a colleague's
real process), a queued backlog, a run logging metrics. Driven with Textual's own pilot,
then as a user would in tmux (80x24 and 200x60), then without a terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeGpus, Result, git, read_run, wait_for
from xpkit.queue import files

pytestmark = pytest.mark.integration
textual = pytest.importorskip("textual", reason="xp top needs Textual (pip install 'xpkit[tui]')")

STEADY = textwrap.dedent(
    """\
    import time
    import xpkit as xp
    run = xp.init()
    for step in range(100000):
        run.log({"loss": 1.0 / (step + 1), "acc": min(1.0, step / 100)}, step=step)
        print("step", step, flush=True)
        time.sleep(0.2)
    """
)


@pytest.fixture
def lab(
    git_project: Path, gpu_file: FakeGpus, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """A worker on GPU 0 running a steady run; GPU 1 busy with a colleague's real
    process; 4 runs queued behind, waiting for a free GPU."""
    colleague = subprocess.Popen(["sleep", "600"])
    gpus = json.loads(gpu_file.path.read_text())["gpus"]
    gpus[1]["processes"] = [{"pid": colleague.pid, "used_mib": 30000}]
    gpus[0].update(utilization_pct=93, temperature_c=66)
    gpu_file.set(gpus)
    (git_project / "steady.py").write_text(STEADY)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "steady")
    names = []
    for _ in range(5):
        result = xp("submit", "--gpus", "1", "--", "python", "steady.py", cwd=git_project)
        assert result.returncode == 0, result.output
        names.append(result.stdout.strip())
    worker_procs("--gpus", "0", cwd=git_project, env={"XP_HEARTBEAT_INTERVAL": "0.5"})
    runs = git_project / "runs"
    wait_for(lambda: read_run(runs / names[0])["status"] == "running", timeout=60)
    wait_for(lambda: "step 3" in (runs / names[0] / "output.log").read_text(), timeout=60)
    try:
        yield {"project": git_project, "runs": runs, "running": names[0], "queued": names[1:],
               "colleague": colleague.pid}  # fmt: skip
    finally:
        colleague.kill()
        colleague.wait()


def cells(app: Any, table: str) -> list[str]:
    """Each row of a table of the main screen as one line of text."""
    from textual.widgets import DataTable

    widget = app.main.query_one(f"#{table}", DataTable)
    return [" | ".join(str(c) for c in widget.get_row_at(i)) for i in range(widget.row_count)]


def test_the_app_driven_by_its_pilot(lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from xpkit.settings import load_settings
    from xpkit.tui.app import TopApp
    from xpkit.tui.model import TopModel
    from xpkit.tui.screens import ConfirmScreen, HelpScreen, PriorityScreen, RunScreen

    monkeypatch.chdir(lab["project"])
    running, queued, runs = lab["running"], lab["queued"], lab["runs"]

    async def drive() -> None:
        settings = load_settings()
        app = TopApp(settings, TopModel(settings.runs), interval=0.5)
        async with app.run_test(size=(80, 24)) as pilot:

            async def until(check: Callable[[], bool], seconds: float = 30) -> None:
                deadline = time.monotonic() + seconds
                while not check():
                    assert time.monotonic() < deadline, "condition not met in time"
                    await pilot.pause(0.2)

            # GPUs: the run on GPU 0, the colleague's process on GPU 1 (user, pid, command)
            await until(lambda: any(f"pid {lab['colleague']} sleep 600" in r
                                    for r in cells(app, "gpus")))  # fmt: skip
            gpu_rows = cells(app, "gpus")
            assert any(f"run {running}" in r and "93%" in r and "66C" in r for r in gpu_rows)
            assert any("root pid" in r and "(30000 MiB)" in r for r in gpu_rows), gpu_rows
            # The queue, in order, with why each run waits
            assert [r.split(" | ")[1] for r in cells(app, "queue")] == queued
            assert all("waiting for 1 free GPU" in r for r in cells(app, "queue"))
            # A running run whose metric changes between two screens
            first = next(r for r in cells(app, "runs") if r.startswith(running))
            await until(lambda: next(r for r in cells(app, "runs")
                                     if r.startswith(running)) != first)  # fmt: skip
            # Enter opens the run: its log follows, `d` shows its code changes
            app.main.query_one("#runs").focus()
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, RunScreen))
            log = app.screen.query_one("#log")
            await until(lambda: "step 3" in "\n".join(log.lines))
            shown = len(log.lines)
            await until(lambda: len(log.lines) > shown)  # following, live
            await pilot.press("d")
            assert "code changes" in str(app.screen.query_one("#diff").render())
            await pilot.press("escape")
            await until(lambda: not isinstance(app.screen, RunScreen))
            # `c` on the last queued run asks, `n` keeps it, `c` + `y` cancels it
            app.main.query_one("#queue").focus()
            await pilot.press("j", "j", "j")
            await pilot.press("c")
            await until(lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")
            assert read_run(runs / queued[-1])["status"] == "queued"
            await pilot.press("c", "y")
            await until(lambda: read_run(runs / queued[-1])["status"] == "cancelled")
            assert "xp top" not in str(read_run(runs / queued[-1]).get("reason"))
            # `p` gives the first queued run a priority, through the queue's files
            await pilot.press("k", "k", "k", "p")
            await until(lambda: isinstance(app.screen, PriorityScreen))
            await pilot.press("7", "enter")
            await until(lambda: read_run(runs / queued[0]).get("priority") == 7)
            marker = json.loads((files.queue_dir(runs) / queued[0]).read_text())
            assert marker["priority"] == 7
            # `/` filters, Esc clears; `g` hides the GPUs; `?` helps
            part = queued[1][7:10]  # its trial number
            await pilot.press("slash", *part)
            matching = [n for n in queued[:-1] if part in n]
            await until(lambda: [r.split(" | ")[1] for r in cells(app, "queue")] == matching)
            await pilot.press("escape")
            await until(lambda: len(cells(app, "queue")) == len(queued) - 1)
            await pilot.press("g")
            assert not app.main.query_one("#gpus").display
            await pilot.press("question_mark")
            await until(lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape", "q")

    asyncio.run(drive())


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_in_tmux_as_a_user_would(
    lab: dict[str, Any], tmp_path: Path, size: tuple[int, int]
) -> None:
    socket = f"xptop{os.getpid()}"
    tmux = ["tmux", "-L", socket]
    env = " ".join(f"{k}={v}" for k, v in os.environ.items()
                   if k.startswith("XP_") or k == "PATH")  # fmt: skip
    command = (
        f"cd {lab['project']} && env {env} {sys.executable} -m xpkit.cli.main top --interval 0.5"
    )
    width, height = size
    subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                    command], check=True)  # fmt: skip
    try:

        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], check=True,
                                  capture_output=True, text=True).stdout  # fmt: skip

        def drawn() -> bool:  # titles are drawn a refresh after the tables, on a busy machine
            shown = screen()
            return all(part in shown for part in (lab["running"][:20], "sleep 600", "Queue: "))

        wait_for(drawn, timeout=60)
        text = screen()
        lines = text.splitlines()
        assert len(lines) <= height and all(len(line) <= width for line in lines)
        assert "GPUs" in text and "Queue: 4 queued" in text and "quit" in text
        if width >= 200:
            assert f"pid {lab['colleague']} sleep 600 (30000 MiB)" in text
        (tmp_path / f"top-{width}x{height}.txt").write_text(text)
        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True)
        wait_for(lambda: subprocess.run([*tmux, "has-session", "-t", "top"],
                                        capture_output=True).returncode != 0, timeout=20)  # fmt: skip
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_without_a_terminal_it_prints_one_screen(
    lab: dict[str, Any], xp: Callable[..., Result]
) -> None:
    for args in (("top",), ("top", "--once")):
        result = xp(*args, cwd=lab["project"], env={"COLUMNS": "100"})
        assert result.returncode == 0, result.output
        assert "Queue (4 queued)" in result.stdout and lab["running"] in result.stdout
        assert f"pid {lab['colleague']} sleep 600" in result.stdout
        assert all(len(line) <= 100 for line in result.stdout.splitlines())
    bad = xp("top", "--interval", "0", cwd=lab["project"])
    assert bad.returncode == 2 and "--interval" in bad.stderr
