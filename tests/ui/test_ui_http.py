"""The dashboard over HTTP: pages, data for charts and logs, and what it refuses."""

from __future__ import annotations

import html
import socket
from pathlib import Path

import httpx
import pytest

from conftest import Result, run_xp
from ui.conftest import MANY_POINTS, XSS, run_names, start_ui, stop

pytestmark = pytest.mark.integration


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_every_page_answers_and_shows_the_runs(ui_project: Path, ui_url: str) -> None:
    names = run_names(ui_project)
    runs = get(f"{ui_url}/")
    assert runs.status_code == 200
    assert all(name in runs.text for name in names.values())
    assert "3 of 3 runs" in runs.text
    run = get(f"{ui_url}/runs/{names['lr0.1']}")
    assert run.status_code == 200 and "loss" in run.text and "acc" in run.text
    compare = get(f"{ui_url}/compare", params=[("run", names["lr0.1"]), ("run", names["lr0.01"])])
    assert compare.status_code == 200 and "<code>lr</code>" in compare.text
    assert get(f"{ui_url}/queue").status_code == 200
    experiments = get(f"{ui_url}/experiments")
    assert "abc123" in experiments.text and "experiments/toy/01_base.xp.toml" in experiments.text
    experiment = get(f"{ui_url}/experiments/abc123/")
    assert experiment.status_code == 200
    assert "python train.py --lr {lr} --seed {seed}" in experiment.text
    image = next(part.split('"')[0] for part in experiment.text.split('<img src="')[1:])
    png = get(f"{ui_url}/experiments/abc123/{image}")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    plotly = get(f"{ui_url}/static/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000


def test_filters_sort_and_pages_through_the_index(ui_project: Path, ui_url: str) -> None:
    names = run_names(ui_project)
    only = get(f"{ui_url}/", params={"where": "lr=0.01"}).text
    assert names["lr0.01"] in only and names["lr0.1"] not in only and names["many"] not in only
    assert names["many"] in get(f"{ui_url}/", params={"tag": XSS}).text
    assert "1 of 1 runs" in get(f"{ui_url}/", params={"q": "many"}).text
    best = get(f"{ui_url}/", params={"sort": "acc", "where": "acc>0"}).text
    assert "2 of 2 runs" in best
    bad = get(f"{ui_url}/", params={"where": "lr"})
    assert bad.status_code == 200 and "is not a condition" in bad.text
    none = get(f"{ui_url}/", params={"status": "failed"}).text
    assert "0 runs" in none and "no runs match" in none


def test_metric_series_is_thinned_but_keeps_spikes_and_zooms_to_full_data(
    ui_project: Path, ui_url: str
) -> None:
    many = run_names(ui_project)["many"]
    full = get(f"{ui_url}/api/runs/{many}/metrics/wave", params={"points": 2000}).json()
    assert full["total"] == MANY_POINTS and full["thinned"]
    assert len(full["x"]) <= 2000
    assert max(full["y"]) > 8.0  # the one spike at step 77,777 survives thinning
    zoomed = get(
        f"{ui_url}/api/runs/{many}/metrics/wave", params={"x0": 1000, "x1": 1999, "points": 2000}
    ).json()
    assert zoomed["x"] == list(range(1000, 2000)) and not zoomed["thinned"]
    assert get(f"{ui_url}/api/runs/{many}/metrics/nope").status_code == 404


def test_log_api_returns_what_was_appended_since_an_offset(ui_project: Path, ui_url: str) -> None:
    many = run_names(ui_project)["many"]
    first = get(f"{ui_url}/api/runs/{many}/log").json()
    assert XSS in first["text"] and first["status"] == "finished"
    again = get(f"{ui_url}/api/runs/{many}/log", params={"offset": first["offset"]}).json()
    assert again["text"] == "" and again["offset"] == first["offset"]


def test_run_data_is_escaped_in_every_page(ui_project: Path, ui_url: str) -> None:
    many = run_names(ui_project)["many"]
    for path in ("/", f"/runs/{many}", "/experiments/abc123/", f"/?tag={XSS}"):
        page = get(f"{ui_url}{path}").text
        assert XSS not in page, path
    run_page = get(f"{ui_url}/runs/{many}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page
    missing = get(f"{ui_url}/runs/{XSS}")
    assert missing.status_code == 404 and XSS not in missing.text


@pytest.mark.parametrize(
    "path",
    [
        "files/../../xp.toml",
        "files/%2e%2e/%2e%2e/xp.toml",
        "files/artifacts/../../../xp.toml",
        "files//etc/passwd",
        "files/%2Fetc%2Fpasswd",
        "files/artifacts/outside.txt",  # a symlink out of the run
        "files/artifacts/nothing-here",
    ],
)
def test_paths_outside_a_run_answer_404(ui_project: Path, ui_url: str, path: str) -> None:
    many = run_names(ui_project)["many"]
    secret = ui_project / "secret.txt"
    secret.write_text("not yours")
    link = ui_project / "runs" / many / "artifacts" / "outside.txt"
    if not link.is_symlink():
        link.symlink_to(secret)
    response = httpx.get(f"{ui_url}/runs/{many}/{path}", timeout=30)
    assert response.status_code == 404
    assert "not yours" not in response.text and "root:" not in response.text


def test_artifacts_are_listed_and_downloaded_as_attachments(ui_project: Path, ui_url: str) -> None:
    many = run_names(ui_project)["many"]
    artifacts = ui_project / "runs" / many / "artifacts"
    (artifacts / "sub").mkdir()
    (artifacts / "sub" / "page.html").write_text(XSS)
    page = get(f"{ui_url}/runs/{many}").text
    assert "sub/page.html" in page
    download = get(f"{ui_url}/runs/{many}/files/artifacts/sub/page.html")
    assert download.status_code == 200 and download.text == XSS
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["content-security-policy"] == "sandbox"


def test_the_dashboard_is_read_only(ui_project: Path, ui_url: str) -> None:
    many = run_names(ui_project)["many"]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = httpx.request(method, f"{ui_url}/runs/{many}", timeout=30)
        assert response.status_code == 405, method
    assert (ui_project / "runs" / many / "run.json").is_file()


def test_compare_refuses_a_bad_choice_of_runs(ui_project: Path, ui_url: str) -> None:
    names = run_names(ui_project)
    one = get(f"{ui_url}/compare", params={"run": names["many"]})
    assert one.status_code == 400 and "2 to 10 different runs; 1 given" in one.text
    ghost = get(f"{ui_url}/compare", params=[("run", names["many"]), ("run", "abcdef_001")])
    assert ghost.status_code == 400
    assert "no run named 'abcdef_001'" in html.unescape(ghost.text)


def test_a_token_is_required_on_every_request_when_given(ui_project: Path) -> None:
    proc, url = start_ui(ui_project, "--token", "s3cret")
    try:
        base = url.split("?")[0].rstrip("/")
        assert url.endswith("?token=s3cret")
        for path in ("/", "/static/plotly.min.js", "/api/status", "/queue"):
            assert get(f"{base}{path}").status_code == 401, path
        assert get(f"{base}/", params={"token": "wrong"}).status_code == 401
        with httpx.Client(timeout=30) as client:
            first = client.get(url)  # the printed URL sets a cookie
            assert first.status_code == 200
            assert client.get(f"{base}/queue").status_code == 200
        bearer = get(f"{base}/queue", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status_code == 200
    finally:
        stop(proc)


def test_a_port_in_use_is_a_clear_error(ui_project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result: Result = run_xp("ui", "--port", str(port), cwd=ui_project, timeout=30)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.output
    for args in (["--port", "99999"], ["--host", "192.0.2.1", "--port", "0"]):
        bad = run_xp("ui", *args, cwd=ui_project, timeout=30)
        assert bad.returncode == 2 and "Traceback" not in bad.output, bad.output


def test_listens_on_loopback_by_default(ui_project: Path) -> None:
    proc, url = start_ui(ui_project)
    try:
        assert url.startswith("http://127.0.0.1:")
        import psutil

        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]  # fmt: skip
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening)
    finally:
        stop(proc)
    assert proc.returncode is not None


def test_a_sparse_or_corrupt_run_still_renders(ui_project: Path, ui_url: str) -> None:
    runs = ui_project / "runs"
    sparse = runs / "sparse_001_bare"
    (sparse / "artifacts").mkdir(parents=True)
    (sparse / "run.json").write_text('{"name": "sparse_001_bare", "status": "finished"}')
    corrupt = runs / "broken_001_half"
    corrupt.mkdir()
    (corrupt / "run.json").write_text('{"name": "broken_001_ha')
    page = get(f"{ui_url}/runs/sparse_001_bare")
    assert page.status_code == 200 and "sparse_001_bare" in page.text
    listing = get(f"{ui_url}/")
    assert listing.status_code == 200 and "skipped run broken_001_half" in listing.text
    broken = get(f"{ui_url}/runs/broken_001_half")
    assert broken.status_code == 400 and "run.json is corrupt" in broken.text
