"""`xp top`'s other screens: a run's page (its log following live, metrics, params, the
diff summary), the help, and the two questions (cancel? which priority?)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Log, Static

from xpkit.store import rundir as rd
from xpkit.tui.model import RunView

LOG_TAIL = 64 * 1024  # bytes of output.log shown when the page opens
HELP = """\
xp top keys

  ↑ ↓ / j k    move in a table          Tab / Shift+Tab   next / previous table
  Enter        open the run              Esc               back, clear the filter
  /            filter by text            s                 sort the runs
  c            cancel (asks first)       r                 requeue an ended run
  p            a queued run's priority   g                 show / hide the GPUs
  ?            this help                 q                 quit

A run's page: l shows the log alone, d the code changes (git.diff), Esc goes back.
The mouse works too: click a row, scroll a table, double-click to open.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "close")]
    CSS = """
    HelpScreen { align: center middle; }
    #help { width: auto; border: round $accent; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]
    CSS = """
    ConfirmScreen { align: center middle; }
    #question { width: auto; border: round $warning; padding: 0 1; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(self.question, id="question")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PriorityScreen(ModalScreen[int | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "give_up", "cancel")]
    CSS = """
    PriorityScreen { align: center middle; }
    #box { width: 60; height: auto; border: round $accent; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.run_name = name

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            yield Static(f"Priority of {self.run_name} (higher runs first; Esc: keep it)")
            yield Input(placeholder="an integer, e.g. 5", id="priority")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(int(event.value.strip()))
        except ValueError:
            self.notify(f"{event.value!r} is not an integer", severity="error")

    def action_give_up(self) -> None:
        self.dismiss(None)


class RunScreen(Screen[None]):
    """One run: what it is, its latest metrics, its params, its output following live."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("l", "logs", "log only"),
        Binding("d", "diff", "code changes"),
    ]
    CSS = """
    #head { height: auto; padding: 0 1; background: $boost; }
    #facts { height: auto; max-height: 45%; }
    #params, #metrics { width: 1fr; padding: 0 1; }
    #diff { display: none; padding: 0 1; }
    .label { height: 1; background: $boost; padding: 0 1; }
    """

    def __init__(self, runs_root: Path, name: str, interval: float) -> None:
        super().__init__()
        self.runs_root, self.run_name, self.interval = runs_root, name, interval
        self.view = RunView(name)
        self.log_offset = 0

    def compose(self) -> ComposeResult:
        yield Static(self.run_name, id="head")
        with Horizontal(id="facts"):
            yield Static("", id="metrics")
            yield Static("", id="params")
        yield Static("", id="diff")
        yield Static("output.log (following)", classes="label")
        yield Log(id="log", highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        path = self.runs_root / self.run_name / rd.OUTPUT_LOG
        try:
            self.log_offset = max(0, path.stat().st_size - LOG_TAIL)
        except OSError:
            self.log_offset = 0
        self.update_page()
        self.set_interval(self.interval, self.update_page)

    def update_page(self) -> None:
        self.view.refresh(self.runs_root)
        info = self.view.info
        elapsed = self.view.elapsed()
        gpus = ",".join(map(str, info.get("gpus") or [])) or "-"
        reason = f" ({info['reason']})" if info.get("reason") else ""
        self.query_one("#head", Static).update(
            f"{self.run_name}  {self.view.status}{reason}  "
            f"{'' if elapsed is None else f'{elapsed:.0f}s'}  host {info.get('host') or '-'}  "
            f"GPUs {gpus}\n{info.get('command') or ''}"
        )
        metrics = "\n".join(f"{k} {v:.4g} {self.view.spark(k)}"
                            for k, v in self.view.latest.items()) or "no metrics yet"  # fmt: skip
        self.query_one("#metrics", Static).update("metrics\n" + metrics)
        params = info.get("params") or {}
        shown = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items()) or "none"
        self.query_one("#params", Static).update("params\n" + shown)
        self._follow_log()

    def _follow_log(self) -> None:
        path = self.runs_root / self.run_name / rd.OUTPUT_LOG
        try:
            data, self.log_offset = rd.new_lines(path, self.log_offset)
        except OSError:
            return
        if data:
            self.query_one("#log", Log).write(data.decode(errors="replace"))

    def action_logs(self) -> None:
        facts = self.query_one("#facts")
        facts.display = not facts.display
        self.query_one("#diff").display = False

    def action_diff(self) -> None:
        diff = self.query_one("#diff", Static)
        diff.display = not diff.display
        if diff.display:
            diff.update(diff_summary(self.runs_root / self.run_name / rd.GIT_DIFF))


def diff_summary(path: Path) -> str:
    """The files git.diff changes, with lines added and removed."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no git.diff (a run without code provenance)"
    files: dict[str, list[int]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("diff --git "):
            current = line.split(" b/", 1)[-1]
            files[current] = [0, 0]
        elif current and line.startswith("+") and not line.startswith("+++"):
            files[current][0] += 1
        elif current and line.startswith("-") and not line.startswith("---"):
            files[current][1] += 1
    if not files:
        return "code changes: none (the run's code is its commit)"
    lines = [f"  {name}  +{added} -{removed}" for name, (added, removed) in files.items()]
    return f"code changes against the commit ({len(files)} file(s)):\n" + "\n".join(lines)
