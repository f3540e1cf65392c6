"""Dashboard scenario for `make bench`: `xp ui` over 10,000 runs (first byte and a usable
runs page in headless Chromium) and a run page whose metric has 100,000 points."""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

POINTS = 100_000
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


TOKEN = "bench-token-0123456789"  # the dashboard's token (XP_UI_TOKEN)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_big_run(runs_root: Path) -> str:
    name = "bigpts_001_points"
    path = runs_root / name
    path.mkdir()
    now = time.time() - 3600
    run = {"name": name, "experiment_id": "bigpts", "trial": 1, "status": "finished",
           "experiment": {"name": "points"}, "params": {}, "tags": [], "host": "bench",
           "created": now, "started": now, "ended": now + 60, "duration": 60.0,
           "command": "python train.py"}  # fmt: skip
    (path / "run.json").write_text(json.dumps(run))
    with open(path / "metrics.jsonl", "w") as f:
        for step in range(POINTS):
            f.write(f'{{"step": {step}, "loss": {1.0 / (1 + step * 0.001):.6f}}}\n')
    os.utime(path, (now, now))
    return name


def first_byte(url: str) -> float:
    parsed = urlparse(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    conn.request("GET", target, headers=AUTH)
    response = conn.getresponse()
    elapsed = time.perf_counter() - started
    response.read()
    conn.close()
    return elapsed


def scenario_ui(work: Path, reps: int, make_runs: Callable[[Path, int], None],
                count: int = 10_000) -> dict[str, Any]:  # fmt: skip
    from playwright.sync_api import sync_playwright

    project = work / "ui"
    project.mkdir()
    (project / "xp.toml").write_text('runs = "runs"\n')
    make_runs(project / "runs", count)
    big = make_big_run(project / "runs")
    env = {**os.environ, "XP_CACHE_DIR": str(work / "ui-cache"), "XP_UI_TOKEN": TOKEN}
    proc = subprocess.Popen(["xp", "ui", "--port", "0"], cwd=project, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        match = re.search(r"(http://\S+)", proc.stdout.readline())
        assert match, "xp ui printed no URL"
        base = match[1].split("?")[0].rstrip("/")
        cold_first_byte = first_byte(base + "/")  # builds the index of 10,000 runs
        ttfb = [first_byte(base + "/") for _ in range(reps)]
        query = [first_byte(base + "/?where=p3%3D4,acc>0.5&sort=acc") for _ in range(reps)]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=CHROMIUM_ARGS)  # fmt: skip
            page = browser.new_page(viewport={"width": 1280, "height": 900},
                                    extra_http_headers=AUTH)  # fmt: skip
            usable = []
            for _ in range(reps):
                started = time.perf_counter()
                page.goto(base + "/", wait_until="load")
                page.wait_for_selector("#runs-table tbody tr[data-run]")
                usable.append(time.perf_counter() - started)
            rows = page.eval_on_selector_all("#runs-table tbody tr[data-run]", "r => r.length")
            chart = []
            for i in range(reps + 1):
                started = time.perf_counter()
                page.goto(f"{base}/runs/{big}", wait_until="load")
                page.wait_for_selector(".chart[data-ready='1']", timeout=60_000)
                chart.append(time.perf_counter() - started)
                if i == 0:
                    drawn = page.eval_on_selector(".chart", "el => el.data[0].x.length")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return {
        "runs": count, "rows_shown": rows, "points": POINTS, "points_drawn": drawn,
        "cold_first_byte_s": cold_first_byte, "first_byte_s": statistics.median(ttfb),
        "query_first_byte_s": statistics.median(query),
        "usable_s": statistics.median(usable), "chart_first_s": chart[0],
        "chart_s": statistics.median(chart[1:]),
    }  # fmt: skip


def render_ui(ui: dict[str, Any]) -> list[str]:
    return [
        f"## 8. Dashboard (`xp ui`) over {ui['runs']:,} runs, in headless Chromium",
        "",
        "| case | median s | target |",
        "| --- | ---: | --- |",
        f"| runs page, first byte | {ui['first_byte_s']:.3f} | < 0.3 s |",
        f"| runs page filtered (`p3=4, acc>0.5`) and sorted by `acc`, first byte "
        f"| {ui['query_first_byte_s']:.3f} | |",
        f"| runs page, loaded with its {ui['rows_shown']} rows shown (usable) "
        f"| {ui['usable_s']:.3f} | < 1 s |",
        f"| run page with {ui['points']:,} metric points, chart drawn "
        f"({ui['points_drawn']:,} points after thinning) | {ui['chart_s']:.3f} | < 1 s |",
        f"| first look: runs page first byte with no index yet | {ui['cold_first_byte_s']:.3f} | |",
        f"| first look: the run page with a cold curve cache and Plotly not yet cached "
        f"| {ui['chart_first_s']:.3f} | |",
        "",
    ]
