"""A project whose train.py is one of the framework scripts beside this file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import git

HERE = Path(__file__).parent


@pytest.fixture
def framework_project(tmp_path: Path) -> Callable[[str], Path]:
    def make(script: str) -> Path:
        root = tmp_path / "project"
        root.mkdir()
        shutil.copy(HERE / script, root / "train.py")
        (root / "xp.toml").write_text('runs = "runs"\nlink = []\n')
        (root / ".gitignore").write_text("/runs/\n")
        git(root, "init", "-q", "-b", "main")
        git(root, "-c", "user.name=T", "-c", "user.email=t@example.com", "add", "-A")
        git(root, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "init")
        return root

    return make


def metric_lines(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.startswith("{")]  # fmt: skip


def steps_of(run: Path, key: str) -> list[int]:
    return [line["step"] for line in metric_lines(run) if key in line]


def checkpoints_of(run: Path) -> list[dict[str, Any]]:
    path = run / "checkpoints.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
