"""What must hold of a runs root after any fault."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Result

DEFINED = {"queued", "running", "finished", "failed", "killed", "cancelled", "lost"}


def json_files_whole(runs_root: Path) -> None:
    """No JSON file is half-written (temporary files of an interrupted write aside)."""
    for path in runs_root.rglob("*.json"):
        if path.name.endswith(".tmp") or ".tmp" in path.name:
            continue
        json.loads(path.read_text())


def metric_steps(run: Path) -> list[int]:
    """Steps in metrics.jsonl; every complete line must parse (an attempt boundary line
    has no step)."""
    try:
        data = (run / "metrics.jsonl").read_bytes()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1]
    records = [json.loads(line) for line in complete.splitlines()]
    return [r["step"] for r in records if "step" in r]


def statuses(xp: Callable[..., Result], project: Path, env: dict[str, str]) -> dict[str, str]:
    result = xp("ls", "--jsonl", "--limit", "0", cwd=project, env=env)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {row["name"]: row["status"] for row in rows}


def tools_still_work(xp: Callable[..., Result], project: Path, env: dict[str, str]) -> None:
    for args in (("ls",), ("report", "--all"), ("queue",)):
        result = xp(*args, cwd=project, env=env)
        assert "Traceback" not in result.output, (args, result.output)
        assert result.returncode in (0, 1), (args, result.output)
