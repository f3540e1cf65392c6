"""`xp top`, the live screen (Textual). Keys follow nvitop and slurmui where they agree:
arrows/j/k move, Enter opens, Esc goes back, `/` filters, `s` sorts, `c` cancels (asks),
`r` requeues, `p` sets a priority, `g` shows or hides the GPUs, `?` helps, `q` quits.
The mouse works too: click a row, scroll a table."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from xpkit.errors import XpError
from xpkit.settings import Settings
from xpkit.store.rundir import RunDir
from xpkit.tui.model import TopModel
from xpkit.tui.screens import ConfirmScreen, HelpScreen, PriorityScreen, RunScreen
from xpkit.tui.tables import (
    GPU_COLUMNS,
    QUEUE_COLUMNS,
    RUN_COLUMNS,
    gpu_cells,
    queue_cells,
    run_cells,
)

SORTS = ("status", "name", "elapsed", "metric")
# Queued runs listed: the head of the queue is what one looks at, and a table measures
# every cell it holds (a thousand rows would cost the first screen 0.4 s).
QUEUE_ROWS = 200
FIRST_QUEUE_ROWS = 60


class TopApp(App[None]):
    TITLE = "xp top"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
    ]

    def __init__(self, settings: Settings, model: TopModel, interval: float = 1.0) -> None:
        super().__init__()
        self.main = MainScreen(settings, model, interval)

    def on_mount(self) -> None:
        self.push_screen(self.main)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


class MainScreen(Screen[None]):
    """GPUs, queue and runs; Enter opens a run."""

    CSS = """
    .title { height: 1; background: $boost; text-style: bold; padding: 0 1; }
    #gpus { height: auto; max-height: 40%; }
    #queue, #runs { height: 1fr; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "open", show=False),
        Binding("j", "down", "down", show=False),
        Binding("k", "up", "up", show=False),
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("c", "cancel", "cancel"),
        Binding("r", "requeue", "requeue"),
        Binding("p", "priority", "priority"),
        Binding("g", "gpus", "GPUs"),
        Binding("escape", "clear_filter", "clear", show=False),
    ]

    def __init__(self, settings: Settings, model: TopModel, interval: float) -> None:
        super().__init__()
        self.settings, self.model, self.interval = settings, model, interval
        self.text = ""
        self.sort = SORTS[0]
        self.shown: dict[str, dict[str, list[str]]] = {}  # table -> the cells on screen
        self.titles: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("GPUs", classes="title", id="gpus-title")
            yield DataTable(id="gpus", cursor_type="row", zebra_stripes=True)
            yield Static("Queue", classes="title", id="queue-title")
            yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
            yield Static("Runs", classes="title", id="runs-title")
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="filter: part of a run name, host or user (Esc clears)",
                    id="filter")  # fmt: skip
        yield Footer()

    def on_mount(self) -> None:
        for table_id, columns in (("gpus", GPU_COLUMNS), ("queue", QUEUE_COLUMNS),
                                  ("runs", RUN_COLUMNS)):  # fmt: skip
            self.query_one(f"#{table_id}", DataTable).add_columns(*columns)
        self.refresh_view()
        self.query_one("#runs", DataTable).focus()
        self.set_interval(self.interval, self.refresh_view)

    # --- the view ---------------------------------------------------------------------
    def refresh_view(self) -> None:
        self.model.refresh()
        model = self.model
        hosts = len({w.host for w in model.workers})
        self._fill("gpus", gpu_cells(model, self.text),
                   f"GPUs: {len(model.workers)} worker(s) on {hosts} host(s)")  # fmt: skip
        # The first screen lists what a screen shows; the rest come at the next refresh.
        limit = QUEUE_ROWS if self.titles else FIRST_QUEUE_ROWS
        queued, matching = queue_cells(model, self.text, limit)
        more = f" (the first {len(queued)} shown; / filters)" if matching > len(queued) else ""
        self._fill("queue", queued, f"Queue: {len(model.queue)} queued{more}")
        runs = run_cells(model, self.text, self.sort)
        self._fill("runs", runs, f"Runs: running and recently ended (sorted by {self.sort})")

    def _fill(self, table_id: str, rows: list[tuple[str, list[str]]], title: str) -> None:
        """Show `rows`; when the same rows are listed as last time, only the cells that
        changed are redrawn (a thousand queued runs cost nothing while nothing moves)."""
        table = self.query_one(f"#{table_id}", DataTable)
        if self.titles.get(table_id) != title:
            self.query_one(f"#{table_id}-title", Static).update(title)
            self.titles[table_id] = title
        keyed: list[tuple[str, list[str]]] = []
        seen: set[str] = set()
        for key, cells in rows:
            if key in seen:  # one run on two GPUs: one row key
                key = f"{key}#{len(seen)}"
            seen.add(key)
            keyed.append((key, cells))
        before = self.shown.get(table_id, {})
        if list(before) == [key for key, _ in keyed]:
            columns = list(table.columns)
            for key, cells in keyed:
                for column, (old, new) in enumerate(zip(before[key], cells)):
                    if old != new:
                        table.update_cell(key, columns[column], _text(new))
        else:
            selected = self._key(table)
            table.clear()
            for key, cells in keyed:
                table.add_row(*map(_text, cells), key=key)
            if selected is not None and selected in seen:
                table.move_cursor(row=table.get_row_index(selected))
        self.shown[table_id] = dict(keyed)

    @staticmethod
    def _key(table: DataTable[Any]) -> str | None:
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None
        return str(key) if key is not None else None

    def selected_run(self) -> str | None:
        """The run under the cursor of the focused table (a GPU row: the run holding it)."""
        focused = self.focused
        if not isinstance(focused, DataTable):
            return None
        key = self._key(focused)
        if key is None or key.startswith("sweep:"):
            return None
        name = key.split("#", 1)[0]
        return name if (self.settings.runs / name).is_dir() else None

    # --- keys ---------------------------------------------------------------------------
    def action_down(self) -> None:
        if isinstance(self.focused, DataTable):
            self.focused.action_cursor_down()

    def action_up(self) -> None:
        if isinstance(self.focused, DataTable):
            self.focused.action_cursor_up()

    def action_open(self) -> None:
        name = self.selected_run()
        if name:
            self.app.push_screen(RunScreen(self.settings.runs, name, self.interval))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_gpus(self) -> None:
        for widget_id in ("#gpus", "#gpus-title"):
            widget = self.query_one(widget_id)
            widget.display = not widget.display

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.refresh_view()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.text = event.value
            self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one("#runs", DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value, self.text = "", ""
        box.remove_class("shown")
        self.query_one("#runs", DataTable).focus()
        self.refresh_view()

    def action_cancel(self) -> None:
        name = self.selected_run()
        if not name:
            return

        def done(yes: bool | None) -> None:
            if yes:
                from xpkit.queue.recover import cancel

                self._act(lambda: f"{name}: {cancel(self.settings.runs, self._dir(name))}")

        self.app.push_screen(ConfirmScreen(f"Cancel {name}? (y/n)"), done)

    def action_requeue(self) -> None:
        name = self.selected_run()
        if name:
            from xpkit.queue.submit import requeue

            self._act(lambda: f"requeued as {requeue(self.settings, self._dir(name))}")

    def action_priority(self) -> None:
        name = self.selected_run()
        if not name:
            return

        def done(priority: int | None) -> None:
            if priority is not None:
                from xpkit.queue.priority import set_priority

                def change() -> str:
                    set_priority(self.settings.runs, self._dir(name), priority)
                    return f"{name}: priority {priority}"

                self._act(change)

        self.app.push_screen(PriorityScreen(name), done)

    def _dir(self, name: str) -> RunDir:
        return RunDir(self.settings.runs / name)

    def _act(self, action: Any) -> None:
        """Do a queue action; what happened, or why not, in a notification."""
        try:
            self.notify(str(action()))
        except XpError as e:
            self.notify(str(e), severity="error", timeout=8)
        self.refresh_view()


def _text(cell: str) -> Text:
    """A cell as plain text: a command or run name with brackets is not Rich markup
    (as a plain str it would be parsed as such, and could even fail to parse)."""
    return Text(cell, no_wrap=True, end="")
