"""`xp top --once` (and `xp top` without a terminal): one screen as plain text."""

from __future__ import annotations

import io
import time

from xpkit.tui.model import TopModel
from xpkit.tui.tables import (
    GPU_COLUMNS,
    QUEUE_COLUMNS,
    RUN_COLUMNS,
    gpu_cells,
    queue_cells,
    run_cells,
)

MAX_QUEUED = 20  # queued runs listed; the rest are counted
WIDE = {"run": 40, "held by": 70, "why it waits": 60, "trend": 24}  # columns that give way
LEAST = {"status": 9, "latest": 8, "trend": 12, "run": 20, "held by": 20, "why it waits": 20}


def render(model: TopModel, width: int = 100) -> str:
    """GPUs, queue and runs as text tables fitted to `width` columns."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=width, file=io.StringIO(), color_system=None, force_terminal=False)

    def table(title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
        grid = Table(title=title, title_justify="left", box=None, pad_edge=False,
                     show_edge=False, expand=False)  # fmt: skip
        for column in columns:
            # short columns keep their width; names, holders, reasons give way (…)
            grid.add_column(column, no_wrap=True, overflow="ellipsis", max_width=WIDE.get(column),
                            min_width=LEAST.get(column, len(column)))  # fmt: skip
        for row in rows:
            grid.add_row(*row)
        console.print(grid)

    hosts = sorted({w.host for w in model.workers})
    console.print(f"xp top · {model.runs_root} · {time.strftime('%H:%M:%S')} · "
                  f"{len(model.workers)} worker(s) on {len(hosts)} host(s)")  # fmt: skip
    gpus = [cells for _, cells in gpu_cells(model)]
    if gpus:
        table("GPUs", GPU_COLUMNS, gpus)
    else:
        console.print("GPUs: none reported (no live worker, or workers without GPUs)")
    rows, total = queue_cells(model, limit=MAX_QUEUED)
    more = total - MAX_QUEUED
    table(f"Queue ({total} queued)", QUEUE_COLUMNS, [cells for _, cells in rows])
    if more > 0:
        console.print(f"… and {more} more (`xp queue` lists them all)")
    table("Runs (running and recently ended)", RUN_COLUMNS,
          [cells for _, cells in run_cells(model)])  # fmt: skip
    for problem in model.problems:
        console.print(f"! {problem}")
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()
