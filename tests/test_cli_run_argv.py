"""`xp run`'s common forms are parsed without click (cli/running.py); they must read
every form exactly as the click command does, and leave every other form to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from xpkit.cli.run import run_cmd
from xpkit.cli.running import parse_run_argv

FAST_FORMS = [
    ["--", "python", "train.py", "--lr", "0.1"],
    ["--name", "quick", "--", "python", "-c", "pass"],
    ["--name=quick", "--tag", "a", "--tag=b", "--", "echo", "--name", "x"],
    ["--param", "lr=0.1", "--param", "seed=3", "--set", "optim.lr=1e-3", "--", "true"],
    ["--yes", "--no-git", "--dry-run", "--", "true", "--yes"],
    ["exp.xp.toml"],
    ["exp.xp.toml", "--param", "seed=3", "--dry-run"],
    ["--tag", "x", "experiments/a/01_b.xp.toml", "--yes"],
    ["--name", "--", "--", "true"],  # the name is "--", as click reads it
    ["--", "--", "true"],
]
CLICK_FORMS = [
    [],
    ["--help"],
    ["-h"],
    ["--queue", "--", "true"],
    ["--bogus", "--", "true"],
    ["--name"],
    ["--yes=1", "--", "true"],
    ["--"],
    ["python", "train.py"],
    ["a.xp.toml", "b.xp.toml"],
    ["a.xp.toml", "--", "true"],
    ["-n", "x", "--", "true"],
]


def click_params(args: list[str]) -> dict[str, Any]:
    ctx = run_cmd.make_context("run", list(args))
    p = ctx.params
    return {"target": list(p["target"]), "name": p["name"], "tags": list(p["tags"]),
            "params": list(p["params"]), "sets": list(p["sets"]), "dry_run": p["dry_run"],
            "yes": p["yes"], "no_git": p["no_git"]}  # fmt: skip


@pytest.mark.parametrize("args", FAST_FORMS, ids=" ".join)
def test_fast_parser_reads_a_form_as_click_does(args: list[str]) -> None:
    assert parse_run_argv(args) == click_params(args)


@pytest.mark.parametrize("args", CLICK_FORMS, ids=" ".join)
def test_other_forms_are_left_to_click(args: list[str]) -> None:
    assert parse_run_argv(args) is None


def test_every_option_of_the_fast_parser_is_one_of_the_click_command() -> None:
    from xpkit.cli import running

    click_options = {opt for param in run_cmd.params for opt in param.opts}
    assert set(running._OPTIONS) <= click_options


def test_xp_run_imports_no_click_typing_or_dataclasses(tmp_path: Path) -> None:
    """The point of the fast path: what `xp run -- CMD` imports, measured in a real
    process, has none of the modules that cost its start-up ~30 ms."""
    project = tmp_path / "p"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "xp.toml").write_text('runs = "runs"\n')
    an_hour_ago = time.time() - 3600  # a settled xp.toml: its parse is cached (no tomllib)
    os.utime(project / "xp.toml", (an_hour_ago, an_hour_ago))
    code = (
        "import sys\nfrom xpkit.cli.main import main\nsys.argv = ['xp', 'run', '--', 'true']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = ('click', 'typing', 'dataclasses', 'inspect', 'platform', 'uuid', 'ctypes')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {**os.environ, "XP_CACHE_DIR": str(tmp_path / "cache"), "XP_GPU_PROBE": "none"}
    for _ in range(2):  # the first parses xp.toml (and caches it), the second reads the cache
        done = subprocess.run([sys.executable, "-c", code], cwd=project, env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr
    assert "finished" in done.stderr
