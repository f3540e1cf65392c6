"""Random bad input (hypothesis): experiment files, configs with --set, run selectors,
--where conditions and whole command lines."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import XP
from reliability.conftest import iterations
from xpkit.errors import XpError
from xpkit.experiment import apply_sets, load_experiment
from xpkit.store.query import parse_where, resolve_run

EXAMPLES = iterations(150, 2000)
CLI_EXAMPLES = iterations(25, 300)
SWEEP = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

scalars = st.one_of(
    st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=12),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip
KEYS = ["id", "name", "command", "grid", "runs", "gpus", "tags", "description", "config",
        "metrics_from", "metrics_from_stdout", "extends"]  # fmt: skip
documents = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), values,
                            max_size=6)  # fmt: skip


def _toml(doc: dict[str, Any]) -> str:
    try:
        return tomli_w.dumps(doc)
    except Exception:  # not representable in TOML: garbage is a fine input too
        return repr(doc)


def _only_clean_errors(call: Any) -> Any:
    try:
        return call()
    except XpError as e:
        assert str(e).strip(), "an error must say what is wrong"
        return None


@SWEEP
@given(text=st.one_of(st.text(max_size=200), documents.map(_toml)))
def test_random_experiment_files_load_or_fail_cleanly(text: str) -> None:
    """Fault: random experiment files (random TOML documents and random text; 150 examples,
    soak: 2,000).
    Promise: they load (and expand) or raise a clean XpError, never anything else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.xp.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        experiment = _only_clean_errors(lambda: load_experiment(path, Path(tmp)))
        if experiment is not None:
            _only_clean_errors(lambda: experiment.expand()[:1000])


@SWEEP
@given(config=st.dictionaries(st.text(max_size=6), values, max_size=5),
       sets=st.dictionaries(st.text(max_size=12), scalars, max_size=3))  # fmt: skip
def test_random_set_overrides_apply_or_fail_cleanly(config: dict[str, Any],
                                                    sets: dict[str, Any]) -> None:  # fmt: skip
    """Fault: random `--set PATH=VALUE` overrides on random configs.
    Promise: applied, or a clean XpError naming the path."""
    _only_clean_errors(lambda: apply_sets(config, sets, "--set"))


@SWEEP
@given(text=st.text(max_size=40))
def test_random_where_conditions_parse_or_fail_cleanly(text: str) -> None:
    """Fault: random `--where` conditions.
    Promise: parsed, or a clean XpError that shows the valid form."""
    _only_clean_errors(lambda: parse_where(text))


@SWEEP
@given(ref=st.text(max_size=30))
def test_random_run_selectors_resolve_or_fail_cleanly(tmp_path: Path, ref: str) -> None:
    """Fault: random run selectors (names, prefixes, EXPID/TRIAL).
    Promise: resolved, or a clean XpError."""
    (tmp_path / "abc123_001_base").mkdir(exist_ok=True)
    if "\x00" in ref:
        return  # not a possible command-line argument
    _only_clean_errors(lambda: resolve_run(tmp_path, ref))


TOKENS = ["ls", "show", "logs", "diff", "queue", "status", "report", "schema", "trash", "hooks",
          "new", "run", "rm", "--where", "--exp", "--status", "--limit", "--sort", "--json",
          "--set", "--param", "--dry-run", "--columns", "--metric", "abc123/1", "abc123/x",
          "zz", "experiments/toy/01_base.xp.toml", "nope.xp.toml", "lr>", "lr=0.1", "-5",
          "a.b=", "=", "", "experiments/toy/02", "xpkit:Nothing", "--check", "check"]  # fmt: skip
argv_lists = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    max_size=10)), min_size=1, max_size=5)  # fmt: skip


@pytest.mark.integration
@settings(max_examples=CLI_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(argv=argv_lists)
def test_random_command_lines_never_trace_back(git_project: Path, argv: list[str]) -> None:
    """Fault: random `xp` command lines in a project with runs (commands that would start
    long-running servers or workers left out; 25 examples, soak: 300).
    Promise: success, or a clean one-paragraph error with exit code 2 (1 where a command
    reports a failed run or a stale report) — never a traceback."""
    if argv[0] in ("ui", "worker", "cluster", "sync", "submit", "backup"):
        return
    if argv[0] == "run" and "--dry-run" not in argv:
        argv = [*argv, "--dry-run"]
    proc = subprocess.run([*XP, *argv], cwd=git_project, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert "Traceback" not in proc.stdout + proc.stderr, (argv, proc.stderr)
    assert proc.returncode in (0, 1, 2), (argv, proc.returncode, proc.stderr)
