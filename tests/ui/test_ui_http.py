"""The dashboard over HTTP: pages, data for charts and logs, and what it refuses."""

from __future__ import annotations

import html
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import Result, run_xp
from ui.conftest import AUTH, MANY_POINTS, XSS, run_names, start_ui, stop

pytestmark = pytest.mark.integration


def get(url: str, **kwargs: object) -> httpx.Response:
    """A GET with the dashboard's token (as scripts send it) unless headers are given."""
    kwargs.setdefault("headers", AUTH)
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
    assert bad.status_code == 400 and "is not a condition" in bad.text  # shown, and said
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
    response = httpx.get(f"{ui_url}/runs/{many}/{path}", headers=AUTH, timeout=30)
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


def _runs_root_state(runs: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(runs)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(runs.rglob("*")) if p.is_file()}  # fmt: skip


def test_the_dashboard_is_read_only(ui_project: Path, ui_url: str) -> None:
    """No request changes a byte of the runs root: write methods answer 405, and every
    page and API (the queue page with a stale marker of a deleted run too) only reads."""
    many = run_names(ui_project)["many"]
    runs = ui_project / "runs"
    queue = runs / ".xp" / "queue"
    queue.mkdir(parents=True, exist_ok=True)
    (queue / "gone00_001_x").write_text('{"priority": 0, "gpus": 0, "labels": [], "submitted": 1}')
    before = _runs_root_state(runs)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = httpx.request(method, f"{ui_url}/runs/{many}", headers=AUTH, timeout=30)
        assert response.status_code == 405, method
    for path in ("/", f"/runs/{many}", "/queue", "/experiments", "/experiments/abc123/",
                 f"/api/runs/{many}/metrics/wave", f"/api/runs/{many}/log", "/api/status",
                 f"/compare?run={many}&run={run_names(ui_project)['lr0.1']}"):  # fmt: skip
        assert get(f"{ui_url}{path}").status_code == 200, path
    assert _runs_root_state(runs) == before


def test_compare_refuses_a_bad_choice_of_runs(ui_project: Path, ui_url: str) -> None:
    names = run_names(ui_project)
    one = get(f"{ui_url}/compare", params={"run": names["many"]})
    assert one.status_code == 400 and "2 to 10 different runs; 1 given" in one.text
    ghost = get(f"{ui_url}/compare", params=[("run", names["many"]), ("run", "abcdef_001")])
    assert ghost.status_code == 400
    assert "no run matches 'abcdef_001'" in html.unescape(ghost.text)
    # the references of the command line work here too: EXPID/TRIAL, unique prefixes
    by_ref = get(f"{ui_url}/compare", params=[("run", "abc123/1"), ("run", "abc123/2")])
    assert by_ref.status_code == 200 and names["lr0.01"] in by_ref.text


def test_a_random_token_guards_every_request_and_leaves_the_url(ui_project: Path) -> None:
    proc, url = start_ui(ui_project, token=None)
    try:
        base, _, query = url.partition("?")
        base = base.rstrip("/")
        token = query.removeprefix("token=")
        assert len(token) >= 24
        for path in ("/", "/static/plotly.min.js", "/api/status", "/queue", "/runs/x"):
            assert get(f"{base}{path}", headers={}).status_code == 401, path
        assert get(f"{base}/", params={"token": "wrong"}, headers={}).status_code == 401
        with httpx.Client(timeout=30) as client:
            first = client.get(f"{base}/queue?token={token}")
            assert first.status_code == 303 and first.headers["location"] == "/queue"
            cookie = first.headers["set-cookie"]
            assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
            page = client.get(f"{base}/queue")
            assert page.status_code == 200 and token not in page.text
            assert client.get(f"{base}/?where=lr%3D0.1&token={token}").headers["location"] == (
                "/?where=lr%3D0.1"
            )
        bearer = get(f"{base}/queue", headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 200
        assert token not in " ".join(psutil.Process(proc.pid).cmdline())
    finally:
        stop(proc)


def test_no_token_warns_and_a_token_file_is_used(ui_project: Path, tmp_path: Path) -> None:
    proc, url = start_ui(ui_project, "--no-token", token=None)
    try:
        assert "?" not in url and get(url, headers={}).status_code == 200
        assert proc.stderr is not None and "every user of this machine" in proc.stderr.readline()
    finally:
        stop(proc)
    (tmp_path / "token").write_text("from-a-file-123\n")
    proc, url = start_ui(ui_project, "--token-file", str(tmp_path / "token"), token=None)
    try:
        assert url.endswith("?token=from-a-file-123")
    finally:
        stop(proc)
    (tmp_path / "short").write_text("abc\n")
    for args in (["--token-file", str(tmp_path / "short")], ["--token-file", str(tmp_path / "no")]):
        bad = run_xp("ui", "--port", "0", *args, cwd=ui_project, timeout=30)
        assert (
            bad.returncode == 2 and "--token-file" in bad.stderr and "Traceback" not in bad.output
        )


@pytest.mark.parametrize(
    ("host", "code"),
    [
        ("rebind.attacker.example", 403),
        ("127.0.0.1.nip.io", 403),
        ("localhost", 200),
        ("[::1]", 200),
        ("127.0.0.1", 200),
    ],
)
def test_only_requests_for_the_served_names_are_answered(ui_url: str, host: str, code: int) -> None:
    """DNS rebinding: a page of another site that resolves to 127.0.0.1 is refused, even
    with the token; a tunnel (`ssh -L 9000:localhost:8765`) arrives with its own port."""
    response = get(f"{ui_url}/queue", headers={**AUTH, "Host": f"{host}:9000"})
    assert response.status_code == code, response.text


@pytest.mark.parametrize(
    "query", ["x0=inf", "x0=nan", "x1=1e400", "x0=abc", "points=many", "points=1.5"]
)
def test_bad_api_parameters_answer_400(ui_project: Path, ui_url: str, query: str) -> None:
    name = run_names(ui_project)["lr0.1"]
    response = get(f"{ui_url}/api/runs/{name}/metrics/loss?{query}")
    assert response.status_code == 400, response.text
    assert query.split("=")[0] in response.json()["error"]
    assert get(f"{ui_url}/?page=two").status_code == 400
    assert get(f"{ui_url}/api/runs/{name}/log?offset=x").status_code == 400


def test_a_large_diff_is_listed_per_file_and_loaded_on_demand(
    ui_project: Path, ui_url: str
) -> None:
    run = ui_project / "runs" / run_names(ui_project)["lr0.1"]
    big = "".join(
        f"diff --git a/out/{i}.txt b/out/{i}.txt\nnew file mode 100644\n--- /dev/null\n"
        f"+++ b/out/{i}.txt\n@@ -0,0 +1 @@\n" + "".join(f"+line {j} <x>\n" for j in range(2000))
        for i in range(200)
    )  # 200 files, about 5 MB
    (run / "git.diff").unlink()  # a run's git.diff may be shared with its sweep's (a link)
    (run / "git.diff").write_text(big)
    page = get(f"{ui_url}/runs/{run.name}")
    assert page.status_code == 200 and len(page.content) < 300_000
    assert page.text.count('class="diff-part"') == 200 and "out/199.txt" in page.text
    assert "line 5 " not in page.text  # nothing of the content until a file is opened
    part = get(f"{ui_url}/api/runs/{run.name}/diff/7").json()["html"]
    assert "line 1999" in part and "&lt;x&gt;" in part and "out/7.txt" in part
    assert get(f"{ui_url}/api/runs/{run.name}/diff/200").status_code == 404
    (run / "git.diff").unlink()
    (run / "git.diff").write_text("diff --git a/a.py b/a.py\n+small change\n")
    small = get(f"{ui_url}/runs/{run.name}").text
    assert "small change" in small and '<details class="diff-part" open>' in small


def test_hidden_bookkeeping_files_are_never_served(ui_project: Path, ui_url: str) -> None:
    run = ui_project / "runs" / run_names(ui_project)["lr0.1"]
    (run / ".secrets.json").write_text('{"command": "secret"}')
    for path in (".secrets.json", ".claim", "artifacts/../.secrets.json"):
        assert get(f"{ui_url}/runs/{run.name}/files/{path}").status_code == 404, path


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
