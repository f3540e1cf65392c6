"""Curve plots as PNG bytes: mean over a group's runs with a min–max band, one line
per group. Matplotlib's Agg canvas, default style, no metadata: the same data gives
byte-identical files, so `git diff` shows only real changes."""

from __future__ import annotations

import io
from typing import Any

from xpkit.report.curves import Curve

FIGSIZE = (6.4, 3.6)
DPI = 100
MAX_LEGEND = 12


def aggregate(curves: list[Curve]) -> tuple[Any, Any, Any, Any]:
    """Steps and per-step mean, min and max over the given curves."""
    import numpy as np

    steps = np.concatenate([np.frombuffer(c[0], dtype=np.int64) for c in curves])
    vals = np.concatenate([np.frombuffer(c[1], dtype=np.float64) for c in curves])
    order = np.argsort(steps, kind="stable")
    steps, vals = steps[order], vals[order]
    starts = np.flatnonzero(np.r_[True, np.diff(steps) != 0])
    counts = np.diff(np.r_[starts, len(steps)])
    mean = np.add.reduceat(vals, starts) / counts
    return steps[starts], mean, np.minimum.reduceat(vals, starts), np.maximum.reduceat(vals, starts)


LINE_STYLES = ("-", "--", ":", "-.")


def _spans_decades(means: list[Any]) -> bool:
    """Positive values over three decades or more read better on a log axis."""
    import numpy as np

    if not means:
        return False
    values = np.concatenate(means)
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() / values.min() >= 1e3)


def plot_png(metric: str, series: list[tuple[str, list[Curve]]]) -> bytes:
    """One PNG: for each (label, curves of that group's runs) a mean line and band."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        matplotlib.rcParams["svg.hashsalt"] = "xpkit"
        figure = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        drawn = []
        for index, (label, curves) in enumerate(series):
            if not curves:
                continue
            steps, mean, low, high = aggregate(curves)
            # Colour and line style both change, so configurations stay apart in print
            # and for colour-blind readers too.
            style = LINE_STYLES[(index // 10) % len(LINE_STYLES)]
            (line,) = axes.plot(steps, mean, label=label, linewidth=1.5, linestyle=style)
            if len(curves) > 1:
                axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            drawn.append(mean)
        if _spans_decades(drawn):
            axes.set_yscale("log")
        axes.set_title(metric)
        axes.set_xlabel("step")
        axes.set_ylabel(metric)
        axes.grid(True, alpha=0.3)
        if 1 < len(series) <= MAX_LEGEND:
            axes.legend(fontsize="small")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
