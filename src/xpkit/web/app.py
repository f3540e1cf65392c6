"""The dashboard's HTTP routes: thin handlers over web.views, GET only.

Every page is rendered on the server with jinja2 (autoescape on: run data is text,
never markup); small scripts in static/xp.js add charts, live logs and live statuses.
"""

from __future__ import annotations

import functools
import hmac
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from xpkit.errors import XpError
from xpkit.report.table import fmt, format_duration
from xpkit.settings import Settings
from xpkit.store.rundir import STATUSES
from xpkit.web import files, views
from xpkit.web.experiments import ReportCache, experiment_files

HERE = Path(__file__).parent
TOKEN_COOKIE = "xp_token"
# No inline scripts: run data can never become code. Plotly sets inline styles.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
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
            sort=q.get("sort", ""), desc=q.get("desc") == "1", page=_int(q.get("page"), 1),
        )  # fmt: skip
        return self.page("runs.html", request, query=query,
                         view=views.runs_page(self.runs_root, query))  # fmt: skip

    def run(self, request: Request) -> Response:
        view = views.run_page(self.runs_root, request.path_params["name"])
        if view is None:
            raise HTTPException(404, f"no run named {request.path_params['name']!r}")
        return self.page("run.html", request, view=view, diff_html=_highlight_diff(view.diff))

    def compare(self, request: Request) -> Response:
        chosen = request.query_params.getlist("run")
        view = views.compare_page(self.runs_root, chosen)
        return self.page("compare.html", request, view=view, missing=views.MISSING)

    def queue(self, request: Request) -> Response:
        from xpkit.queue.status import queue_view

        return self.page("queue.html", request, view=queue_view(self.runs_root))

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
            _float(q.get("x0")), _float(q.get("x1")), _int(q.get("points"), 2000),
        )  # fmt: skip
        if series is None:
            raise HTTPException(404, "no such run or metric")
        return JSONResponse(series)

    def api_log(self, request: Request) -> Response:
        run = files.run_dir(self.runs_root, request.path_params["name"])
        if run is None:
            raise HTTPException(404, "no such run")
        text, offset = files.read_log(run.file("output.log"),
                                      _int(request.query_params.get("offset"), -1))  # fmt: skip
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


def _highlight_diff(diff: str) -> str:
    from markupsafe import Markup
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    return Markup(highlight(diff, DiffLexer(), HtmlFormatter(cssclass="code"))) if diff else ""


def _url_with(request: Request, **changes: Any) -> str:
    """This page's URL with some query parameters replaced (None drops one)."""
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    for key, value in changes.items():
        if isinstance(value, (list, tuple)):
            items.extend((key, str(v)) for v in value)
        elif value is not None:
            items.append((key, str(value)))
    return f"{request.url.path}?{urlencode(items)}"


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


class TokenCheck(BaseHTTPMiddleware):
    """With --token, every request carries it: as `?token=`, which also sets a cookie
    so that links keep working, as that cookie, or as `Authorization: Bearer`."""

    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.token:
            given = (
                request.query_params.get("token")
                or request.cookies.get(TOKEN_COOKIE)
                or request.headers.get("authorization", "").removeprefix("Bearer ")
            )
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse(
                    "401: this dashboard needs its token; open the URL that `xp ui` printed",
                    status_code=401, headers=SECURITY_HEADERS,
                )  # fmt: skip
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if self.token and request.query_params.get("token") == self.token:
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        return response


def create_app(settings: Settings, token: str | None = None) -> Starlette:
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
        Route("/static/{file:path}", board.static),
        Route("/favicon.ico", lambda r: Response(status_code=204)),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(TokenCheck, token=token)],
        exception_handlers={XpError: on_error, HTTPException: on_error, Exception: on_error},
    )
