"""The README is part of the product: every command is documented, the quickstart runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from xpkit.cli.main import COMMANDS, cli

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_and_a_readme_example(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    text = README.read_text()
    assert re.search(rf"`xp {name}[ `]", text), f"README has no example of `xp {name}`"


def test_readme_shows_the_two_commands_first() -> None:
    text = README.read_text()
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = "import sys; from xpkit.cli.main import main; sys.argv=['xp','--help']\n" \
           "try: main()\nexcept SystemExit: pass\n" \
           "heavy = [m for m in ('rich', 'psutil', 'sqlite3', 'typeguard') if m in sys.modules]\n" \
           "print('HEAVY', heavy)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out


@pytest.mark.integration
def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    text = README.read_text()
    block = text.split("<!-- quickstart", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Quick Start", "GIT_AUTHOR_EMAIL": "qs@example.com",
        "GIT_COMMITTER_NAME": "Quick Start", "GIT_COMMITTER_EMAIL": "qs@example.com",
    }  # fmt: skip
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [p for p in (tmp_path / "demo" / "runs").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 7
    assert "done Namespace(lr=0.1, seed=0)" in proc.stdout
