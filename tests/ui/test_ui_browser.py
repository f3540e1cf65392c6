"""The dashboard in a real browser: headless Chromium (Debian's package) driven by
Playwright. Each test leaves screenshots in test-output/ui/ for people to look at."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import XP, git, wait_for
from ui.conftest import AUTH, run_names, start_ui, stop

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("XP_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "ui"
# This machine's network is closed: keep Chromium from calling home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: `make test` installs chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers=AUTH)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def table_runs(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#runs-table tbody tr[data-run]",
                                          "rows => rows.map(r => r.dataset.run)"))  # fmt: skip


def chart_points(page: Any, metric: str) -> list[int]:
    """Points drawn per trace in the chart of `metric`, once it has been drawn."""
    selector = f".chart[data-metric='{metric}'][data-ready='1']"
    page.wait_for_selector(selector, timeout=15_000)
    return list(page.eval_on_selector(selector, "el => el.data.map(t => t.x.length)"))


def test_runs_table_filters_sorts_and_selects_runs_to_compare(
    ui_project: Path, ui_url: str, page: Any
) -> None:
    names = run_names(ui_project)
    page.goto(ui_url + "/")
    assert sorted(table_runs(page)) == sorted(names.values())
    screenshot(page, "runs")

    page.fill("#filter-where", "lr=0.01")
    page.click("#filter-button")
    page.wait_for_url("**where=lr%3D0.01**")
    assert table_runs(page) == [names["lr0.01"]]
    screenshot(page, "runs-filtered")

    page.goto(ui_url + "/?where=loss>0")
    page.click("#runs-table th[data-key='loss'] a")  # lowest loss first
    page.wait_for_url("**sort=loss**")
    assert table_runs(page) == [names["lr0.01"], names["lr0.1"]]
    page.click("#runs-table th[data-key='loss'] a")  # again: reversed
    page.wait_for_url("**desc=1**")
    assert table_runs(page) == [names["lr0.1"], names["lr0.01"]]

    assert page.is_disabled("#compare-button")
    page.check(f"input[value='{names['lr0.1']}']")
    page.check(f"input[value='{names['lr0.01']}']")
    assert page.is_enabled("#compare-button")
    page.click("#compare-button")
    page.wait_for_url("**/compare?**")
    assert "Compare 2 runs" in page.inner_text("h1")


def test_run_page_charts_every_metric_with_its_points(
    ui_project: Path, ui_url: str, page: Any
) -> None:
    names = run_names(ui_project)
    page.goto(f"{ui_url}/runs/{names['lr0.1']}")
    assert chart_points(page, "loss") == [5] and chart_points(page, "acc") == [5]
    assert "lr" in page.inner_text("#config") and "0.1" in page.inner_text("#config")
    page.fill("#package-filter", "xpkit")
    visible = page.eval_on_selector_all("#packages tr:not([hidden])", "rows => rows.length")
    assert visible == 1
    page.click(".chart-box:has(.chart[data-metric='loss']) .log-toggle")
    page.wait_for_function(
        "() => document.querySelector(\".chart[data-metric='loss']\").layout.yaxis.type === 'log'"
    )
    screenshot(page, "run")


def test_a_large_run_is_thinned_for_display_and_zoom_loads_full_data(
    ui_project: Path, ui_url: str, page: Any
) -> None:
    many = run_names(ui_project)["many"]
    page.goto(f"{ui_url}/runs/{many}")
    (shown,) = chart_points(page, "wave")
    assert 100 < shown <= 4000  # 100,000 logged, thinned to about two per pixel
    assert "<script>" in page.inner_text("#log")  # the printed markup, as text
    page.evaluate(
        "Plotly.relayout(document.querySelector(\".chart[data-metric='wave']\"), "
        "{'xaxis.range': [1000, 1499]})"
    )
    page.wait_for_function(
        "() => document.querySelector(\".chart[data-metric='wave']\").data[0].x.length === 500"
    )
    screenshot(page, "run-100k-zoomed")


def test_compare_overlays_curves_and_shows_the_config_difference(
    ui_project: Path, ui_url: str, page: Any
) -> None:
    names = run_names(ui_project)
    page.goto(f"{ui_url}/compare?run={names['lr0.1']}&run={names['lr0.01']}")
    assert chart_points(page, "loss") == [5, 5]
    legend = page.eval_on_selector(".chart[data-metric='loss']", "el => el.data.map(t => t.name)")
    assert legend == [names["lr0.1"], names["lr0.01"]]
    config = page.inner_text("#compare-config")
    assert "lr" in config and "0.1" in config and "0.01" in config
    assert "seed" not in config  # equal in both: not a difference
    screenshot(page, "compare")


SLOW_PY = textwrap.dedent(
    """\
    import time
    for i in range(40):
        print(f"line {i}", flush=True)
        time.sleep(0.2)
    """
)


def test_log_and_status_follow_a_running_run(ui_project: Path, ui_url: str, page: Any) -> None:
    (ui_project / "slow.py").write_text(SLOW_PY)
    git(ui_project, "add", "-A")
    git(ui_project, "commit", "-q", "-m", "slow")
    before = set(run_names(ui_project).values())
    proc = subprocess.Popen([*XP, "run", "--name", "slow", "--", sys.executable, "slow.py"],
                            cwd=ui_project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        runs = ui_project / "runs"
        wait_for(lambda: any("slow" in p.name for p in runs.iterdir() if p.name not in before))
        slow = next(p.name for p in runs.iterdir() if "slow" in p.name)
        wait_for(lambda: "line 2" in (runs / slow / "output.log").read_text(errors="replace"))
        page.goto(f"{ui_url}/runs/{slow}")
        page.wait_for_function(
            "() => document.getElementById('log').textContent.includes('line 2')"
        )
        assert "line 39" not in page.inner_text("#log")
        assert page.inner_text(f"h1 .status[data-run='{slow}']") == "running"
        page.wait_for_function(
            "() => document.getElementById('log').textContent.includes('line 30')", timeout=30_000
        )
        screenshot(page, "run-live-log")
        listing = page.context.new_page()
        listing.goto(ui_url + "/")
        assert listing.inner_text(f"#runs-table .status[data-run='{slow}']") == "running"
        listing.wait_for_function(
            f"() => document.querySelector(\"#runs-table .status[data-run='{slow}']\")"
            ".textContent === 'finished'", timeout=30_000,
        )  # fmt: skip
        page.wait_for_function(
            "() => document.getElementById('log').textContent.includes('line 39')"
        )
        assert page.inner_text(f"h1 .status[data-run='{slow}']") == "finished"
    finally:
        proc.wait(60)


def test_experiment_and_queue_pages_render(ui_project: Path, ui_url: str, page: Any) -> None:
    page.goto(f"{ui_url}/experiments/abc123/")
    assert page.inner_text("#experiment-command") == "python train.py --lr {lr} --seed {seed}"
    assert page.eval_on_selector_all("#report img", "imgs => imgs.every(i => i.naturalWidth > 0)")
    screenshot(page, "experiment")
    page.goto(f"{ui_url}/queue")
    assert "no worker is alive" in page.inner_text("#workers")
    screenshot(page, "queue")


def test_the_token_leaves_the_address_bar_and_is_in_no_link(ui_project: Path, browser: Any) -> None:
    """The printed URL carries the token once: the browser ends on the same page without
    it, keeps it only in an HttpOnly cookie, and no link or page text has it."""
    proc, url = start_ui(ui_project, token=None)
    token = url.split("token=")[1]
    context = browser.new_context()  # no Authorization header: the cookie must do
    page = context.new_page()
    try:
        page.goto(url)
        assert token not in page.url and page.url.endswith("/")
        assert len(table_runs(page)) == 3
        name = run_names(ui_project)["lr0.1"]
        page.click(f"a[href='/runs/{name}']")
        page.wait_for_selector(".chart[data-ready='1']")
        for seen in (page.url, page.content(), page.evaluate("document.cookie")):
            assert token not in seen
        hrefs = page.eval_on_selector_all("[href], [src]", "els => els.map(e => e.href || e.src)")
        assert hrefs and not any(token in h for h in hrefs)
        cookies = context.cookies()
        assert [c["httpOnly"] for c in cookies if c["value"] == token] == [True]
        screenshot(page, "after-token")
        fresh = browser.new_context()  # another browser (or user) without the token
        assert fresh.new_page().goto(url.split("?")[0]).status == 401
        fresh.close()
    finally:
        context.close()
        stop(proc)


def test_a_search_report_and_its_interactive_charts(
    git_project: Path, browser: Any, page: Any
) -> None:
    """`xp report` of a sweep has its best trial, top trials, history, parallel
    coordinates and importances; the experiment page draws the trials with Plotly."""
    from sweeps import sweep_file

    path = sweep_file(git_project, expid="uisrch", trials=6, parallel=2, gpus=0, steps=3,
                      pause=0.0, pruner='"none"', method="random")  # fmt: skip
    worker = subprocess.Popen([*XP, "worker", "--max-jobs", "2"], cwd=git_project,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        swept = subprocess.run([*XP, "sweep", str(path)], cwd=git_project, capture_output=True,
                               text=True, timeout=300)  # fmt: skip
    finally:
        worker.kill()
        worker.wait()
    assert swept.returncode == 0, swept.stdout + swept.stderr
    made = subprocess.run([*XP, "report", str(path)], cwd=git_project, capture_output=True,
                          text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    markdown = path.with_name("05_uisrch.md").read_text()
    assert "## Search" in markdown and "6 of 6 trials (6 finished)" in markdown
    assert "### Top trials" in markdown and "### Parameter importances (fANOVA)" in markdown
    for image in ("search-history.png", "search-parallel.png"):
        assert f"(05_uisrch.assets/{image})" in markdown
        assert (path.parent / "05_uisrch.assets" / image).stat().st_size > 1000
    proc, url = start_ui(git_project)
    try:
        page.goto(f"{url.split('?')[0].rstrip('/')}/experiments/uisrch/")
        page.wait_for_selector("#search-parallel[data-ready='1']", timeout=15_000)
        page.wait_for_selector("#search-history[data-ready='1']", timeout=15_000)
        drawn = page.eval_on_selector("#search-parallel", "el => el.data.map(t => t.x)")
        assert drawn == [["x", "y", "loss"]] * 6  # one line per finished trial
        assert page.locator("#search-parallel path.js-line").count() == 6
        points = page.eval_on_selector("#search-history", "el => el.data[0].x.length")
        assert points == 6
        assert "Top trials" in page.inner_text("#report")
        screenshot(page, "search")
    finally:
        stop(proc)
