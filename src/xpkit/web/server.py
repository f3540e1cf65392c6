"""Start the dashboard: bind the socket ourselves (a clear error when the port is
taken), print the URL, serve with uvicorn until Ctrl-C."""

from __future__ import annotations

import html
import ipaddress
import os
import socket
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from xpkit.errors import ConfigError, XpError
from xpkit.settings import Settings
from xpkit.web.guard import LOOPBACK_NAMES


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror}. "
            "Pick another port with --port (0 picks a free one)."
        ) from None
    sock.listen(128)
    return sock


def allowed_hosts(host: str) -> frozenset[str] | None:
    """The Host names requests may carry: loopback names, and the address listened on
    with this machine's names; None (any) when listening on every address."""
    if host in ("0.0.0.0", "::", ""):
        return None
    names = {host.strip("[]").lower(), *LOOPBACK_NAMES}
    if not is_loopback(host):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def serve(
    settings: Settings, *, host: str, port: int, token: str | None, open_browser: bool,
    announce: Callable[[str], None],
) -> None:  # fmt: skip
    """`token` None: no token (--no-token)."""
    try:
        import uvicorn

        from xpkit.web.app import create_app
    except ImportError as e:
        raise XpError(
            f"xp ui needs the ui extra ({e.name} is missing): pip install 'xpkit[ui]'"
        ) from None
    if token is None:
        print(
            "xp: warning: --no-token: every user of this machine"
            + ("" if is_loopback(host) else f" and anyone who can reach {host}")
            + " can read your runs, their logs and environments",
            file=sys.stderr,
        )
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound}/"
    announce(f"xp ui: serving {settings.runs} at {url}{_with_token(token)} (Ctrl-C stops)")
    if open_browser:
        _open(url + _with_token(token))
    app = create_app(settings, token, allowed_hosts(host), bound)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _with_token(token: str | None) -> str:
    return f"?token={quote(token)}" if token else ""


def _open(url: str) -> None:
    """Open the browser on a local file that redirects to `url`, so the token is never
    on a command line (`ps` shows the browser's arguments to every user)."""
    fd, path = tempfile.mkstemp(prefix="xp-ui-", suffix=".html")  # mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(f'<meta http-equiv="refresh" content="0;url={html.escape(url)}">\n')
    threading.Timer(0.5, webbrowser.open, args=(Path(path).as_uri(),)).start()
    threading.Timer(60, os.unlink, args=(path,)).start()
