"""`type = "command"`: run a shell command with the event as JSON on stdin and in
XP_EVENT_* environment variables, with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from xpkit.errors import HookError
from xpkit.hooks.base import Event, Hook, HookSpec


class CommandHook(Hook):
    def __init__(self, spec: HookSpec) -> None:
        super().__init__(spec)
        command = spec.options.get("command")
        if not isinstance(command, str) or not command.strip():
            raise HookError(f"hook {spec.name}: 'command' must be a shell command")
        self.command = command
        self.timeout = float(spec.options.get("timeout", 30))

    def deliver(self, *, event: Event, state: dict[str, Any], key: str) -> str:
        env = {
            **os.environ,
            "XP_EVENT_TYPE": event.type,
            "XP_EVENT_ID": key,
            "XP_EVENT_EXPERIMENT": str(event.experiment.get("name", "")),
            "XP_EVENT_RUNS": " ".join(event.runs),
            "XP_EVENT_TEXT": event.summary_text(),
        }
        name = self.spec.name
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", self.command],
                input=json.dumps(event.to_json()),
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"hook {name}: command timed out after {self.timeout:g} s") from None
        if proc.returncode != 0:
            error = proc.stderr.strip()[-200:]
            raise HookError(f"hook {name}: command exited {proc.returncode}: {error}")
        return f"exit 0 {proc.stdout.strip()[:100]}"
