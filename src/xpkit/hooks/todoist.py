"""`type = "todoist"`: one task per sweep ("Check results: <experiment> (<N> runs)"),
a comment per failed run, a comment with the status counts and results when the
sweep ends (and, optionally, the due date moved to today or a label added). Closing
the task is left to the human who read the results. `granularity = "run"`: a task per
run instead. Todoist API v1; `base_url` points tests at a local server."""

from __future__ import annotations

from typing import Any

from xpkit.errors import HookError
from xpkit.hooks.base import Event, Hook, HookSpec, env_secret
from xpkit.hooks.http import post

DEFAULT_BASE = "https://api.todoist.com/api/v1"


class TodoistHook(Hook):
    def __init__(self, spec: HookSpec) -> None:
        super().__init__(spec)
        self.base = str(spec.options.get("base_url", DEFAULT_BASE)).rstrip("/")
        self.per_run = spec.options.get("granularity", "sweep") == "run"

    def _headers(self, key: str) -> dict[str, str]:
        token = env_secret(self.spec, "token_env")
        return {"Authorization": f"Bearer {token}", "X-Request-Id": key}

    def _call(self, path: str, body: dict[str, Any], key: str) -> Any:
        return post(f"{self.base}{path}", json=body, headers=self._headers(key),
                    what=f"hook {self.spec.name} (todoist {path.split('/')[1]})")  # fmt: skip

    def deliver(self, *, event: Event, state: dict[str, Any], key: str) -> str:
        env_secret(self.spec, "token_env")  # no token: a dead letter saying so, at once
        slot = event.runs[0] if self.per_run and event.runs else "sweep"
        task = state.get(slot)
        if event.type in ("sweep.submitted", "run.started") and task is None:
            name = event.experiment.get("name") or event.experiment.get("id")
            count = event.planned or len(event.runs)
            content = f"Check results: {event.runs[0]}" if self.per_run else (
                f"Check results: {name} ({count} runs)"
            )  # fmt: skip
            body: dict[str, Any] = {"content": content}
            for option in ("project_id", "labels", "due_string"):
                if option in self.spec.options:
                    body[option] = self.spec.options[option]
            created = self._call("/tasks", body, key)
            state[slot] = created.get("id")
            return f"task {state[slot]}"
        if task is None:
            raise HookError(
                f"hook {self.spec.name}: no Todoist task to comment on: the event that creates "
                "it (sweep.submitted or run.started) was not delivered; `xp hooks ls` says why"
            )
        self._call("/comments", {"task_id": task, "content": self._comment(event)}, key)
        if event.type == "sweep.finished":
            update: dict[str, Any] = {}
            if self.spec.options.get("due_today_on_finish"):
                update["due_string"] = "today"
            if self.spec.options.get("label_on_finish"):
                update["labels"] = [self.spec.options["label_on_finish"]]
            if update:
                self._call(f"/tasks/{task}", update, key + "-update")
        return f"comment on task {task}"

    def _comment(self, event: Event) -> str:
        lines = [event.summary_text()]
        if event.metrics:
            keys = sorted({k for m in event.metrics.values() for k in m})[:6]
            lines += ["", "| run | " + " | ".join(keys) + " |",
                      "|---|" + "---|" * len(keys)]  # fmt: skip
            for run, metrics in sorted(event.metrics.items()):
                cells = [f"{metrics[k]:.4g}" if isinstance(metrics.get(k), float) else
                         str(metrics.get(k, "")) for k in keys]  # fmt: skip
                lines.append(f"| {run} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def check(self) -> list[str]:
        try:
            env_secret(self.spec, "token_env")
        except Exception as e:
            return [str(e)]
        return []
