"""The three tables of `xp top` as text cells, one definition for the live app and the
plain `--once` view."""

from __future__ import annotations

import time

from xpkit.tui.model import TopModel


def _mib(value: int) -> str:
    return f"{value / 1024:.1f}G" if value >= 1024 else f"{value}M"


def _age(seconds: float | None) -> str:
    """Coarse past a minute, so that a long queue's ages change once a minute."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


GPU_COLUMNS = ("host", "gpu", "util", "memory", "temp", "held by")
QUEUE_COLUMNS = ("#", "run", "prio", "gpus", "labels", "age", "why it waits")
RUN_COLUMNS = ("run", "status", "elapsed", "metric", "latest", "trend")


def gpu_cells(model: TopModel, text: str = "") -> list[tuple[str, list[str]]]:
    """(key, cells) per GPU: the key is the run holding it, or host:index."""
    rows = []
    for gpu in model.gpus:
        cells = [gpu.host, str(gpu.index), "-" if gpu.util is None else f"{gpu.util}%",
                 f"{_mib(gpu.mem_used)}/{_mib(gpu.mem_total)}" if gpu.mem_total else "-",
                 "-" if gpu.temp is None else f"{gpu.temp}C", gpu.holder]  # fmt: skip
        if text.lower() in " ".join(cells).lower():
            rows.append((gpu.run or f"{gpu.host}:{gpu.index}", cells))
    return rows


def queue_cells(
    model: TopModel, text: str = "", limit: int | None = None
) -> tuple[list[tuple[str, list[str]]], int]:
    """The first `limit` queued runs matching `text`, and how many match in all."""
    now = time.time()
    text = text.lower()
    rows: list[tuple[str, list[str]]] = []
    matching = 0
    for q in model.queue:
        if text and text not in q.name.lower():
            continue
        matching += 1
        if limit is None or len(rows) < limit:
            cells = [str(q.position), q.name, str(q.priority), str(q.gpus),
                     ",".join(q.labels) or "-", _age(now - q.submitted), q.why]  # fmt: skip
            rows.append((q.name, cells))
    return rows, matching


def run_cells(model: TopModel, text: str = "", sort: str = "status") -> list[tuple[str, list[str]]]:
    """Running and recently ended runs; a sweep's trials follow a line naming the sweep
    and its best value so far."""
    rows: list[tuple[str, list[str]]] = []
    views = model.run_rows(text, sort)
    in_sweep = {name: study for study, e in model.sweeps.items() for name in e["runs"]}
    for view in [v for v in views if v.name not in in_sweep]:
        rows.append((view.name, _run_line(model, view.name)))
    for study, entry in sorted(model.sweeps.items()):
        names = [v.name for v in views if in_sweep.get(v.name) == study]
        if not names:
            continue
        best = entry.get("best")
        what = f"best {entry['metric']} {_value(best)}" if entry.get("metric") else ""
        rows.append((f"sweep:{study}", [f"sweep {study}: {len(names)} trial(s) here", "", "",
                                         entry.get("metric") or "", what, ""]))  # fmt: skip
        rows += [(name, _run_line(model, name, indent="  ")) for name in names]
    return rows


def _run_line(model: TopModel, name: str, indent: str = "") -> list[str]:
    view = model.runs[name]
    metric = model.chosen(view)
    return [indent + name, view.status, _age(view.elapsed()), metric or "-",
            _value(view.latest.get(metric) if metric else None),
            view.spark(metric) if metric else ""]  # fmt: skip
