"""Who the dashboard answers: requests for the names it serves (no DNS rebinding), that
carry its token (any user of a shared server can reach a loopback port).

The token, as in Jupyter: random by default, printed once in the URL. That URL sets
an HttpOnly cookie and redirects to the same page without the token, so the token is
never in a link, the address bar or the browser's history; scripts and curl can send
`Authorization: Bearer TOKEN` instead.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
# No inline scripts: run data can never become code. Plotly sets inline styles.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


NEEDS_TOKEN = (
    "401: this dashboard needs its token; open the URL that `xp ui` printed "
    "(or send Authorization: Bearer TOKEN)"
)


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:8765` → `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0].rstrip(".") if header.count(":") <= 1 else header


def cookie_name(port: int) -> str:
    return f"xp_token_{port}"  # cookies ignore ports: one per dashboard of this machine


class Guard(BaseHTTPMiddleware):
    """`hosts`: the names requests may be for (None: any, when listening on every
    address; the token protects it). Any port: an `ssh -L 9000:localhost:8765` tunnel
    arrives as localhost:9000. `token` None: no token (`--no-token`)."""

    def __init__(
        self, app: Any, token: str | None, hosts: frozenset[str] | None, cookie: str
    ) -> None:
        super().__init__(app)
        self.token, self.hosts, self.cookie = token, hosts, cookie

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        name = host_name(request.headers.get("host", ""))
        if self.hosts is not None and name not in self.hosts:
            return _refuse(403, f"403: this dashboard answers only requests for "
                                f"{', '.join(sorted(self.hosts))}, not {name!r}")  # fmt: skip
        if self.token:
            offered = request.query_params.get("token")
            if offered is not None:
                if not self._matches(offered):
                    return _refuse(401, "401: wrong token; open the URL that `xp ui` printed")
                clean = request.url.remove_query_params("token")
                target = clean.path + (f"?{clean.query}" if clean.query else "")
                response: Response = RedirectResponse(target, status_code=303)
                response.set_cookie(self.cookie, self.token, httponly=True, samesite="lax")
                return _secured(response)
            given = request.cookies.get(self.cookie) or request.headers.get(
                "authorization", ""
            ).removeprefix("Bearer ")
            if not self._matches(given):
                return _refuse(401, NEEDS_TOKEN)
        return _secured(await call_next(request))

    def _matches(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())


def _secured(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def _refuse(code: int, text: str) -> Response:
    return _secured(PlainTextResponse(text, status_code=code))
