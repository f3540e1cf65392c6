"""`type = "webhook"`: POST the event as JSON (with a Slack-compatible `text`)."""

from __future__ import annotations

import os
from typing import Any

from xpkit.errors import HookError
from xpkit.hooks.base import Event, Hook, HookSpec
from xpkit.hooks.http import post


class WebhookHook(Hook):
    def __init__(self, spec: HookSpec) -> None:
        super().__init__(spec)
        url = spec.options.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise HookError(f"hook {spec.name}: url must be an http(s) URL, got {url!r}")
        self.url = url

    def _headers(self, key: str) -> dict[str, str]:
        headers = {"Idempotency-Key": key}
        for header, variable in (self.spec.options.get("headers_env") or {}).items():
            value = os.environ.get(str(variable))
            if not value:
                raise HookError(
                    f"hook {self.spec.name}: environment variable {variable} is not set"
                )
            headers[str(header)] = value
        return headers

    def deliver(self, *, event: Event, state: dict[str, Any], key: str) -> str:
        payload = {"text": event.summary_text(), **event.to_json()}
        post(self.url, json=payload, headers=self._headers(key), what=f"hook {self.spec.name}")
        return "posted"

    def check(self) -> list[str]:
        try:
            self._headers("check")
        except HookError as e:
            return [str(e)]
        return []
