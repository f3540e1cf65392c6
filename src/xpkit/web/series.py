"""Metric series for charts: the points in a step range, thinned on the server so that
a browser draws at most a few thousand of them whatever the run logged."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from typing import Any

DEFAULT_MAX_POINTS = 2000


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity; a gap in the line says the value is not a number."""
    return value if math.isfinite(value) else None


def window(
    steps: array, values: array, x0: float | None = None, x1: float | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> dict[str, Any]:  # fmt: skip
    """The points with x0 <= step <= x1, at most about `max_points` of them.

    Thinning keeps each bucket's lowest and highest value in step order, so spikes
    and dips stay visible at any zoom (plain striding would drop them)."""
    if all(steps[i] <= steps[i + 1] for i in range(len(steps) - 1)):
        lo = 0 if x0 is None else bisect_left(steps, math.ceil(x0))
        hi = len(steps) if x1 is None else bisect_right(steps, math.floor(x1))
        xs, ys = steps[lo:hi], values[lo:hi]
    else:  # steps logged out of order: filter without bisecting
        keep = [
            i for i, s in enumerate(steps)
            if (x0 is None or s >= x0) and (x1 is None or s <= x1)
        ]  # fmt: skip
        xs = array("q", (steps[i] for i in keep))
        ys = array("d", (values[i] for i in keep))
    total = len(xs)
    max_points = max(max_points, 2)
    if total <= max_points:
        return {"x": list(xs), "y": [_finite(v) for v in ys], "total": total, "thinned": False}
    buckets = max_points // 2
    out_x: list[int] = []
    out_y: list[float | None] = []
    for b in range(buckets):
        start, end = b * total // buckets, (b + 1) * total // buckets
        chunk = ys[start:end]
        finite = [(v, i) for i, v in enumerate(chunk) if math.isfinite(v)]
        if not finite:
            out_x.append(xs[start])
            out_y.append(None)
            continue
        low, high = min(finite)[1], max(finite)[1]
        for i in sorted({low, high}):
            out_x.append(xs[start + i])
            out_y.append(chunk[i])
    return {"x": out_x, "y": out_y, "total": total, "thinned": True}
