"""The dashboard's HTTP routes: thin handlers over web.views, GET only.

Every page is rendered on the server with jinja2 (autoescape on: run data is text,
never markup); small scripts in static/xp.js add charts, live logs and live statuses.
"""

from __future__ import annotations

import functools
import json
import math
import mimetypes
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from xpkit.errors import XpError
from xpkit.report.table import fmt
from xpkit.settings import Settings
from xpkit.store import rundir as rd
from xpkit.store.rundir import STATUSES
from xpkit.values import format_duration
from xpkit.web import diffs, files, views
from xpkit.web.experiments import ReportCache, experiment_files
from xpkit.web.guard import LOOPBACK_NAMES, Guard, cookie_name

HERE = Path(__file__).parent
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "text/plain", "application/json"}


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,  # run.json written by older versions lacks keys
    )
    env.filters.update(
        fmt=fmt, duration=format_duration, stamp=views.age_text,
        json=lambda value: json.dumps(value, ensure_ascii=False, default=str),
    )  # fmt: skip
    env.globals.update(all_statuses=STATUSES)
    return env


class Dashboard:
    """State shared by the handlers: where the runs are and the rendered reports."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runs_root = settings.runs
        self.templates = _templates()
        self.reports = ReportCache(settings)

    def page(self, name: str, request: Request, status_code: int = 200, **context: Any) -> Response:
        html = self.templates.get_template(name).render(
            request=request, url_with=lambda **kw: _url_with(request, **kw),
            runs_root=str(self.runs_root), **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status_code)

    # --- pages ----------------------------------------------------------------------
    def runs(self, request: Request) -> Response:
        q = request.query_params
        query = views.RunsQuery(
            exp=q.get("exp", ""), statuses=tuple(s for s in q.getlist("status") if s),
            tag=q.get("tag", ""), text=q.get("q", ""), where=q.get("where", ""),
            sort=q.get("sort", ""), desc=q.get("desc") == "1", page=_int(q.get("page"), 1, "page"),
        )  # fmt: skip
        view = views.runs_page(self.runs_root, query)
        return self.page("runs.html", request, status_code=400 if view.error else 200,
                         query=query, view=view)  # fmt: skip

    def run(self, request: Request) -> Response:
        view = views.run_page(self.runs_root, request.path_params["name"])
        if view is None:
            raise HTTPException(404, f"no run named {request.path_params['name']!r}")
        diff = self.runs_root / view.run["name"] / rd.GIT_DIFF
        parts = diffs.diff_parts(diff)
        whole = sum(p.size for p in parts) <= diffs.SHOWN_WHOLE
        shown = {p.index: _diff_html(diff, p) for p in parts} if whole else {}
        return self.page("run.html", request, view=view, diff_parts=parts, diff_shown=shown)

    def compare(self, request: Request) -> Response:
        chosen = request.query_params.getlist("run")
        view = views.compare_page(self.runs_root, chosen)
        return self.page("compare.html", request, view=view, missing=views.MISSING)

    def queue(self, request: Request) -> Response:
        from xpkit.queue.status import queue_view

        return self.page("queue.html", request, view=queue_view(self.runs_root, tidy=False))

    def experiments(self, request: Request) -> Response:
        return self.page("experiments.html", request,
                         files=experiment_files(self.settings))  # fmt: skip

    def experiment(self, request: Request) -> Response:
        report = self.reports.get(request.path_params["expid"])
        if report is None:
            raise HTTPException(404, f"no experiment file with ID {request.path_params['expid']}")
        page = views.runs_page(self.runs_root, views.RunsQuery(exp=report.experiment.id))
        return self.page("experiment.html", request, report=report, view=page)

    def experiment_asset(self, request: Request) -> Response:
        report = self.reports.get(request.path_params["expid"], fresh=False)
        data = report.images.get(request.path_params["asset"]) if report else None
        if data is None:
            raise HTTPException(404, "no such image in this report")
        return Response(data, media_type="image/png")

    def run_file(self, request: Request) -> Response:
        run = files.run_dir(self.runs_root, request.path_params["name"])
        path = files.inside(run.path, request.path_params["path"]) if run else None
        if path is None:
            raise HTTPException(404, "no such file in this run")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        inline = media_type in INLINE_TYPES and request.query_params.get("download") != "1"
        return FileResponse(
            path, media_type=media_type, filename=path.name,
            content_disposition_type="inline" if inline else "attachment",
            headers={"Content-Security-Policy": "sandbox"},
        )  # fmt: skip

    # --- data for the scripts -------------------------------------------------------
    def api_status(self, request: Request) -> Response:
        return JSONResponse(views.statuses(self.runs_root, request.query_params.getlist("run")))

    def api_metric(self, request: Request) -> Response:
        q = request.query_params
        series = views.metric_series(
            self.runs_root, request.path_params["name"], request.path_params["metric"],
            _float(q.get("x0"), "x0"), _float(q.get("x1"), "x1"),
            _int(q.get("points"), 2000, "points"),
        )  # fmt: skip
        if series is None:
            raise HTTPException(404, "no such run or metric")
        return JSONResponse(series)

    def api_diff(self, request: Request) -> Response:
        run = files.run_dir(self.runs_root, request.path_params["name"])
        parts = diffs.diff_parts(run.file(rd.GIT_DIFF)) if run else []
        index = _int(request.path_params["part"], -1, "part")
        if run is None or not 0 <= index < len(parts):
            raise HTTPException(404, "no such run or part of its diff")
        return JSONResponse({"html": _diff_html(run.file(rd.GIT_DIFF), parts[index])})

    def api_log(self, request: Request) -> Response:
        run = files.run_dir(self.runs_root, request.path_params["name"])
        if run is None:
            raise HTTPException(404, "no such run")
        offset = _int(request.query_params.get("offset"), -1, "offset")
        text, offset = files.read_log(run.file("output.log"), offset)
        status = views.statuses(self.runs_root, [run.name]).get(run.name, "unknown")
        return JSONResponse({"text": text, "offset": offset, "status": status})

    def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        path = _plotly_js() if name == "plotly.min.js" else files.inside(HERE / "static", name)
        if path is None:
            raise HTTPException(404, "no such file")
        return FileResponse(path, headers={"Cache-Control": "max-age=3600"})


@functools.cache
def _plotly_js() -> Path | None:
    """Plotly's browser bundle, as the plotly Python package ships it (no CDN)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def _diff_html(diff: Path, part: diffs.DiffPart) -> str:
    from markupsafe import Markup

    text, cut = diffs.part_text(diff, part)
    note = f'<p class="dim">… cut at {diffs.PART_CUT // 1024} KiB; git.diff has it all</p>'
    return Markup(diffs.highlight(text) + (note if cut else ""))


def _url_with(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters replaced (None drops one)."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    for key, value in changes.items():
        if isinstance(value, (list, tuple)):
            items.extend((key, str(v)) for v in value)
        elif value is not None:
            items.append((key, str(value)))
    return f"{request.url.path}?{urlencode(items)}"


def _int(text: str | None, default: int, name: str) -> int:
    """A query parameter that must be an integer: 400 (not 500) when it is not."""
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise HTTPException(400, f"{name}={text!r}: give a whole number") from None


def _float(text: str | None, name: str) -> float | None:
    """A query parameter that must be a finite number (`inf`, `nan`, `1e400` are not)."""
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise HTTPException(400, f"{name}={text!r}: give a finite number")
    return value


def create_app(
    settings: Settings,
    token: str | None = None,
    hosts: frozenset[str] | None = LOOPBACK_NAMES,
    port: int = 0,
) -> Starlette:
    """The dashboard; `token` None serves without one, `hosts` None any Host."""
    board = Dashboard(settings)

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, XpError):
            code, message = 400, str(exc)
        elif isinstance(exc, HTTPException):
            code, message = exc.status_code, str(exc.detail)
        else:
            print(f"xp ui: error on {request.url.path}: {exc!r}", file=sys.stderr)
            code, message = 500, "internal error; see the terminal running `xp ui`"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=code)
        return board.page("error.html", request, status_code=code, code=code, message=message)

    routes = [
        Route("/", board.runs),
        Route("/runs/{name}", board.run),
        Route("/runs/{name}/files/{path:path}", board.run_file),
        Route("/compare", board.compare),
        Route("/queue", board.queue),
        Route("/experiments", board.experiments),
        Route("/experiments/{expid}", lambda r: RedirectResponse(f"{r.url.path}/")),
        Route("/experiments/{expid}/", board.experiment),
        Route("/experiments/{expid}/{asset:path}", board.experiment_asset),
        Route("/api/status", board.api_status),
        Route("/api/runs/{name}/metrics/{metric:path}", board.api_metric),
        Route("/api/runs/{name}/log", board.api_log),
        Route("/api/runs/{name}/diff/{part}", board.api_diff),
        Route("/static/{file:path}", board.static),
        Route("/favicon.ico", lambda r: Response(status_code=204)),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, token=token, hosts=hosts, cookie=cookie_name(port))],
        exception_handlers={XpError: on_error, HTTPException: on_error, Exception: on_error},
    )
