"""Start the dashboard: bind the socket ourselves (a clear error when the port is
taken), print the URL, serve with uvicorn until Ctrl-C."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable
from urllib.parse import quote

from xpkit.errors import ConfigError, XpError
from xpkit.settings import Settings


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


def serve(
    settings: Settings, *, host: str, port: int, token: str | None, open_browser: bool,
    announce: Callable[[str], None],
) -> None:  # fmt: skip
    try:
        import uvicorn

        from xpkit.web.app import create_app
    except ImportError as e:
        raise XpError(
            f"xp ui needs the ui extra ({e.name} is missing): pip install 'xpkit[ui]'"
        ) from None
    if not is_loopback(host):
        print(
            f"xp: warning: listening on {host}: anyone who can reach this machine can read "
            f"your runs{'' if token else '; pass --token to require a secret'}",
            file=sys.stderr,
        )
    sock = bind(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}/"
    if token:
        url += f"?token={quote(token)}"
    announce(f"xp ui: serving {settings.runs} at {url} (Ctrl-C stops)")
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(create_app(settings, token), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
