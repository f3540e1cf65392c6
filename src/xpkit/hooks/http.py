"""HTTP for hooks: one place that turns transport problems into TransientError."""

from __future__ import annotations

from typing import Any

from xpkit.errors import HookError
from xpkit.hooks.base import TransientError

TIMEOUT = 10.0


def post(url: str, *, json: Any, headers: dict[str, str], what: str) -> Any:
    import httpx

    try:
        response = httpx.post(url, json=json, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as e:  # said in words, without the URL: it may hold secrets
        raise TransientError(f"{what}: {_in_words(e)}") from None
    if response.status_code == 429:
        retry = response.headers.get("Retry-After")
        after = float(retry) if retry and retry.isdigit() else None
        raise TransientError(f"{what}: rate limited (429)", retry_after=after)
    if response.status_code >= 500:
        raise TransientError(f"{what}: server error {response.status_code}")
    if response.status_code >= 400:
        raise HookError(f"{what}: refused with {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        return {}


def _in_words(error: Exception) -> str:
    import httpx

    if isinstance(error, httpx.ConnectTimeout):
        return f"no answer to connect within {TIMEOUT:.0f} s (host down or unreachable?)"
    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {TIMEOUT:.0f} s"
    if isinstance(error, httpx.ConnectError):
        return "cannot connect (nothing listens there, or the host is unreachable)"
    if isinstance(error, httpx.UnsupportedProtocol):
        return "the URL is not http(s)"
    return f"{type(error).__name__} while sending"
