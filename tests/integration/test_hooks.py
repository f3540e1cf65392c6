"""Hooks against a real local HTTP server standing in for Todoist (and a webhook)."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, git

pytestmark = pytest.mark.integration
TOKEN = "s3cret-todoist-token"


class FakeTodoist:
    """Todoist API v1's create task, add comment and update task; deduplicates by
    X-Request-Id as the real API does; can answer 429/500, hang or drop connections."""

    def __init__(self, port: int = 0) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.comments: list[dict[str, Any]] = []
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self.posts: list[dict[str, Any]] = []
        self.seen: dict[str, Any] = {}
        self.times: list[float] = []
        self.failures: list[int] = []
        self.hang = 0.0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                with fake.lock:
                    fake.times.append(time.monotonic())
                    failure = fake.failures.pop(0) if fake.failures else None
                if fake.hang:
                    time.sleep(fake.hang)
                if failure == 429:
                    return self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
                if failure:
                    return self._send(failure, {"error": "boom"})
                if self.path == "/hook":
                    fake.posts.append(body)
                    return self._send(200, {"ok": True})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "unauthorized"})
                key = self.headers.get("X-Request-Id", "")
                with fake.lock:
                    if key and key in fake.seen:
                        return self._send(200, fake.seen[key])
                    if self.path == "/api/v1/tasks":
                        answer = {"id": str(len(fake.tasks) + 1), **body}
                        fake.tasks[answer["id"]] = answer
                    elif self.path == "/api/v1/comments":
                        answer = {"id": f"c{len(fake.comments)}", **body}
                        fake.comments.append(answer)
                    elif self.path.startswith("/api/v1/tasks/"):
                        fake.updates.append((self.path.rsplit("/", 1)[1], body))
                        answer = {"ok": True}
                    else:
                        return self._send(404, {"error": "no such endpoint"})
                    fake.seen[key] = answer
                self._send(200, answer)

            def _send(self, code: int, data: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(data).encode()
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def todoist(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTodoist]:
    monkeypatch.setenv("TODOIST_TEST_TOKEN", TOKEN)
    fake = FakeTodoist()
    yield fake
    fake.stop()


def configure(project: Path, hooks: str) -> None:
    (project / "xp.toml").write_text('runs = "runs"\n' + textwrap.dedent(hooks))
    (project / "flaky.py").write_text(
        "import sys, xpkit as xp\nrun = xp.init()\nrun.log({'acc': 0.5 + int(sys.argv[1]) / 10})\n"
        "sys.exit(3 if sys.argv[1] == '2' else 0)\n"
    )
    (project / "experiments" / "toy" / "05_hooks.xp.toml").write_text(
        'id = "hok555"\nname = "hooked"\ncommand = "python flaky.py {i}"\n[grid]\ni = [0, 1, 2]\n'
    )
    git(project, "add", "-A")
    git(project, "commit", "-qm", "hooks")


def todo_hook(url: str, extra: str = "") -> str:
    return f"""
        [hooks.todo]
        type = "todoist"
        base_url = "{url}/api/v1"
        token_env = "TODOIST_TEST_TOKEN"
        project_id = "p1"
        due_today_on_finish = true
        {extra}
        """


def flush_until(
    xp: Callable[..., Result], project: Path, done: Callable[[], bool], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        xp("hooks", "flush", cwd=project)
        time.sleep(0.2)
    assert done()


def test_one_task_per_sweep_with_comments(
    git_project: Path, todoist: FakeTodoist, xp: Callable[..., Result]
) -> None:
    configure(git_project, todo_hook(todoist.url))
    assert "todo (todoist): ok" in xp("hooks", "check", cwd=git_project).stdout
    result = xp("run", "experiments/toy/05_hooks.xp.toml", cwd=git_project)
    assert result.returncode == 1  # one run failed
    flush_until(xp, git_project, lambda: len(todoist.comments) == 2)
    (task,) = todoist.tasks.values()
    assert task["content"] == "Check results: hooked (3 runs)" and task["project_id"] == "p1"
    failure, finish = todoist.comments
    assert "hok555_003_hooked-i2 failed (exit code 3)" in failure["content"]
    assert "finished: 1 failed, 2 finished" in finish["content"]
    assert "| hok555_001_hooked-i0 | 0.5 |" in finish["content"]
    assert todoist.updates == [(task["id"], {"due_string": "today"})]
    assert TOKEN not in "".join(
        p.read_text(errors="replace") for p in (git_project / "runs").rglob("*") if p.is_file()
    )
    assert TOKEN not in result.output


def test_redelivery_after_a_crash_creates_no_second_task(
    git_project: Path, todoist: FakeTodoist, xp: Callable[..., Result]
) -> None:
    configure(git_project, todo_hook(todoist.url, 'events = ["sweep.submitted"]'))
    assert xp("submit", "experiments/toy/05_hooks.xp.toml", cwd=git_project).returncode == 0
    outbox = git_project / "runs" / ".xp" / "outbox" / "todo"
    (pending,) = list(outbox.glob("*.json"))
    saved = pending.read_text()
    flush_until(xp, git_project, lambda: len(todoist.tasks) == 1)
    pending.write_text(saved)  # the crash: sent, but never acknowledged
    for state in (git_project / "runs" / ".xp" / "sweeps").glob("*.json"):
        state.write_text(json.dumps({"runs": []}))
    flush_until(xp, git_project, lambda: not list(outbox.glob("*.json")))
    assert len(todoist.tasks) == 1


def test_429_and_500_are_retried_with_backoff(
    git_project: Path, todoist: FakeTodoist, xp: Callable[..., Result]
) -> None:
    configure(git_project, todo_hook(todoist.url, 'events = ["sweep.submitted"]'))
    todoist.failures = [429, 500]
    assert xp("submit", "experiments/toy/05_hooks.xp.toml", cwd=git_project).returncode == 0
    first = xp("hooks", "flush", cwd=git_project)
    assert "rate limited (429)" in first.stdout and "retry in 1.0 s" in first.stdout
    flush_until(xp, git_project, lambda: len(todoist.tasks) == 1)
    assert len(todoist.times) == 3
    assert todoist.times[1] - todoist.times[0] >= 0.9  # Retry-After honoured


def test_rate_limit_holds_under_a_burst(
    git_project: Path, todoist: FakeTodoist, xp: Callable[..., Result]
) -> None:
    configure(git_project, f"""
        [hooks.web]
        type = "webhook"
        url = "{todoist.url}/hook"
        events = ["run.failed"]
        rate_per_minute = 3000
        """)  # fmt: skip
    code = textwrap.dedent("""\
        from xpkit.hooks.base import Event
        from xpkit.hooks.events import specs_of
        from xpkit.hooks.outbox import emit
        from xpkit.settings import load_settings
        settings = load_settings()
        for i in range(200):
            emit(settings.runs, specs_of(settings), Event("run.failed", "s", {"name": "x"}, [f"r{i}"]))
        """)  # fmt: skip
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], cwd=git_project, check=True)
    started = time.monotonic()
    flush = xp("hooks", "flush", cwd=git_project, timeout=120)
    assert "200 event(s) delivered" in flush.stdout
    assert time.monotonic() - started >= 3.5  # 200 at 50 per second
    times = todoist.times
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 51
    assert [p["runs"][0] for p in todoist.posts] == [f"r{i}" for i in range(200)]  # in order
    assert all(p["text"].startswith("xp: r") for p in todoist.posts)


def test_a_hanging_api_does_not_slow_runs_and_delivery_resumes(
    git_project: Path, todoist: FakeTodoist, xp: Callable[..., Result]
) -> None:
    configure(git_project, todo_hook(todoist.url))
    todoist.hang = 15.0
    started = time.monotonic()
    result = xp("run", "--", "python", "-c", "pass", cwd=git_project)
    assert result.returncode == 0
    assert time.monotonic() - started < 6  # the run itself takes well under a second
    todoist.hang = 0.0
    flush_until(
        xp, git_project, lambda: len(todoist.tasks) == 1 and len(todoist.comments) == 1, timeout=60
    )


def test_webhook_headers_and_command_hook(
    git_project: Path,
    todoist: FakeTodoist,
    tmp_path: Path,
    xp: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_AUTH", "Bearer abc")
    out = tmp_path / "events.jsonl"
    configure(git_project, f"""
        [hooks.web]
        type = "webhook"
        url = "{todoist.url}/hook"
        headers_env = {{Authorization = "HOOK_AUTH"}}
        [hooks.cmd]
        type = "command"
        command = "cat >> {out} && echo \\" $XP_EVENT_TYPE\\" >> {out}"
        """)  # fmt: skip
    assert xp("run", "experiments/toy/05_hooks.xp.toml", cwd=git_project).returncode == 1
    flush_until(xp, git_project, lambda: len(todoist.posts) == 2
                and out.exists() and " sweep.finished" in out.read_text())  # fmt: skip
    assert [p["type"] for p in todoist.posts] == ["run.failed", "sweep.finished"]
    assert todoist.posts[1]["counts"] == {"failed": 1, "finished": 2}
    text = out.read_text()
    assert '"type": "run.failed"' in text and " sweep.finished" in text


@pytest.mark.parametrize(
    ("hooks", "fragment"),
    [
        (
            '[hooks.x]\ntype = "slack"\n',
            "hooks.x.type 'slack' is unknown; valid: command, todoist, webhook",
        ),
        (
            '[hooks.x]\ntype = "webhook"\nurl = "http://a"\nevents = ["run.exploded"]\n',
            "unknown event 'run.exploded'",
        ),
        ('[hooks.x]\ntype = "webhook"\nurl = "ftp://a"\n', "url must be an http(s) URL"),
        (
            '[hooks.x]\ntype = "todoist"\ntoken_env = "NOPE_TOKEN"\n',
            "environment variable NOPE_TOKEN (token_env) is not set",
        ),
    ],
    ids=["type", "event", "url", "token"],
)
def test_bad_hook_config_is_explained_and_runs_go_on(
    git_project: Path, xp: Callable[..., Result], hooks: str, fragment: str
) -> None:
    configure(git_project, hooks)
    check = xp("hooks", "check", cwd=git_project)
    assert check.returncode == 2 and fragment in check.stderr and "Traceback" not in check.output
    assert xp("run", "--", "python", "-c", "pass", cwd=git_project).returncode == 0


def test_failing_and_hanging_commands_become_dead_letters(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    configure(git_project, """
        [hooks.bad]
        type = "command"
        command = "echo nope >&2; exit 4"
        events = ["run.finished"]
        [hooks.slow]
        type = "command"
        command = "sleep 5"
        timeout = 0.5
        events = ["run.finished"]
        """)  # fmt: skip
    started = time.monotonic()
    assert xp("run", "--", "python", "-c", "pass", cwd=git_project).returncode == 0
    assert time.monotonic() - started < 6
    xp("hooks", "flush", cwd=git_project)
    listing = xp("hooks", "ls", cwd=git_project).stdout
    assert "command exited 4: nope" in listing and "timed out after 0.5 s" in listing
    assert "2 event(s) back in the outbox" in xp("hooks", "retry", cwd=git_project).stdout
    assert "bad: 1 pending" in xp("hooks", "ls", cwd=git_project).stdout


def test_server_down_then_back_and_hooks_test(git_project: Path, xp: Callable[..., Result]) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure(git_project, f"""
        [hooks.web]
        type = "webhook"
        url = "http://127.0.0.1:{port}/hook"
        events = ["run.finished"]
        """)  # fmt: skip
    assert xp("run", "--", "python", "-c", "pass", cwd=git_project).returncode == 0
    xp("hooks", "flush", cwd=git_project)
    listing = xp("hooks", "ls", cwd=git_project).stdout
    assert "web: 1 pending" in listing and "run.finished: hook web: cannot connect" in listing
    server = FakeTodoist(port)  # the server comes back
    try:
        outbox = git_project / "runs" / ".xp" / "outbox" / "web"
        for path in outbox.glob("*.json"):  # skip the backoff wait
            record = json.loads(path.read_text())
            path.write_text(json.dumps({**record, "next_at": 0}))
        flush_until(xp, git_project, lambda: len(server.posts) == 1)
        assert server.posts[0]["type"] == "run.finished"
        sample = xp("hooks", "test", "web", cwd=git_project)
        assert sample.returncode == 0 and "web: posted" in sample.stdout
        assert server.posts[-1]["experiment"]["name"] == "xp hooks test"
    finally:
        server.stop()


def test_missing_token_leaves_a_dead_letter_saying_why(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    configure(git_project, todo_hook("http://127.0.0.1:9", 'token_env = "ABSENT_TOKEN"').replace(
        'token_env = "TODOIST_TEST_TOKEN"\n', ""))  # fmt: skip
    assert xp("run", "--", "python", "-c", "pass", cwd=git_project).returncode == 0
    xp("hooks", "flush", cwd=git_project)
    listing = xp("hooks", "ls", cwd=git_project).stdout
    assert "dead todo sweep.submitted" in listing and "ABSENT_TOKEN" in listing


def test_hooks_that_cannot_work_are_said_once_and_never_counted_delivered(
    git_project: Path, xp: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Todoist hook without its token and a webhook nobody listens on: `xp run` says
    once, at the start, which hook cannot work; no event of theirs is counted delivered;
    their dead letters and retries say why in words."""
    monkeypatch.delenv("TODOIST_TEST_TOKEN", raising=False)
    configure(git_project, todo_hook("http://127.0.0.1:9") + """
        [hooks.web]
        type = "webhook"
        url = "http://127.0.0.1:9/hook"
        """)  # fmt: skip
    result = xp("run", "experiments/toy/05_hooks.xp.toml", cwd=git_project)
    assert result.returncode == 1  # one run of three fails, as configured
    warned = [line for line in result.stderr.splitlines() if "cannot work" in line]
    assert len(warned) == 1 and "hook todo cannot work" in warned[0]
    assert "TODOIST_TEST_TOKEN" in warned[0]
    xp("hooks", "flush", cwd=git_project)
    listing = xp("hooks", "ls", cwd=git_project).stdout
    dead_todo = [line for line in listing.splitlines() if line.startswith("dead todo")]
    assert any("sweep.finished" in line for line in dead_todo), listing
    assert all("TODOIST_TEST_TOKEN" in line for line in dead_todo), listing
    assert "cannot connect (nothing listens there" in listing
    tested = xp("hooks", "test", "web", cwd=git_project)
    assert tested.returncode == 2 and "cannot connect" in tested.stderr
    assert "ConnectError" not in tested.output


def test_no_hooks_is_said(git_project: Path, xp: Callable[..., Result]) -> None:
    listing = xp("hooks", "ls", cwd=git_project)
    assert listing.returncode == 0 and "no hooks configured" in listing.stdout


def test_the_end_of_a_sweep_counts_every_run(
    git_project: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    """A 3+3 sweep (three runs fail) with a hook that keeps per-sweep state: the two
    writers of the sweep's state (the runs list, the hook's task) never overwrite each
    other, so sweep.finished counts all six (it said "2 failed, 1 finished" before)."""
    out = tmp_path / "events.jsonl"
    configure(git_project, f"""
        [hooks.cmd]
        type = "command"
        command = "cat >> {out}; echo >> {out}"
        """)  # fmt: skip
    (git_project / "experiments" / "toy" / "06_six.xp.toml").write_text(
        'id = "six666"\ncommand = "python flaky.py {i}"\n[grid]\ni = [0, 2]\nseed = [1, 2, 3]\n'
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "six")
    for _ in range(3):
        assert xp("run", "experiments/toy/06_six.xp.toml", cwd=git_project).returncode == 1
        flush_until(xp, git_project, lambda: out.exists() and "sweep.finished" in out.read_text())
        finished = [json.loads(line) for line in out.read_text().splitlines()
                    if '"sweep.finished"' in line]  # fmt: skip
        assert finished[-1]["counts"] == {"failed": 3, "finished": 3}, finished[-1]
        out.unlink()
