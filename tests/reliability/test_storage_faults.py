"""The disk fills up, files are corrupted, the runs root goes away."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, git, runs_of, wait_for
from reliability.invariants import json_files_whole, metric_steps, tools_still_work

pytestmark = pytest.mark.integration

FLOOD_PY = textwrap.dedent(
    """\
    import time
    import xpkit as xp
    run = xp.init()
    for step in range(200_000):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 200_000}, step=step)
        if step % 20_000 == 0:
            run.flush()
    print("training done")
    """
)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_while_logging_marks_the_run_failed(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """Fault: the disk fills while a run logs (a 1 MB file-size limit on the run's processes;
    metrics.jsonl needs about 14 MB).
    Promise: the run is marked failed with a clear reason, the metric lines written before are
    intact, the training program itself is not interrupted."""
    (git_project / "flood.py").write_text(FLOOD_PY)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-q", "-m", "flood")
    proc = subprocess.run([*XP, "run", "--", "python", "flood.py"], cwd=git_project,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size(1_000_000))  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    (run,) = runs_of(git_project / "runs")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed"
    assert "File too large" in info["reason"] and "bytes of metrics lost" in info["reason"]
    assert "training done" in (run / "output.log").read_text()
    steps = metric_steps(run)
    assert steps and steps == list(range(len(steps)))  # what was written is whole
    assert (run / "metrics.jsonl").stat().st_size <= 1_000_000
    json_files_whole(git_project / "runs")
    tools_still_work(xp, git_project, {})


def test_corrupt_files_are_skipped_or_rebuilt_never_a_crash(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """Fault: a truncated run.json, a metrics.jsonl cut mid-line, a garbage index database,
    a garbage outbox event file.
    Promise: `xp ls`, `xp show`, `xp report`, `xp hooks flush` warn and go on; the index is
    rebuilt; no file is deleted."""
    assert xp("run", "experiments/toy/01_base.xp.toml", cwd=git_project).returncode == 0
    first, second = runs_of(git_project / "runs")
    (first / "run.json").write_text((first / "run.json").read_text()[:40])
    metrics = (second / "metrics.jsonl").read_bytes()
    (second / "metrics.jsonl").write_bytes(metrics + b'{"step": 5, "loss": 0.')
    listed = xp("ls", cwd=git_project)
    assert listed.returncode == 0 and "Traceback" not in listed.output
    assert f"skipped run {first.name}: run.json is corrupt" in listed.stderr
    assert second.name in listed.stdout
    assert xp("show", second.name, cwd=git_project).returncode == 0
    report = xp("report", "experiments/toy/01_base.xp.toml", cwd=git_project)
    assert report.returncode == 0, report.output
    index = next((Path(os.environ["XP_CACHE_DIR"]) / "index").glob("*.sqlite"))
    index.write_bytes(b"this is not a database" * 100)
    rebuilt = xp("ls", cwd=git_project)
    assert rebuilt.returncode == 0 and second.name in rebuilt.stdout
    assert "was corrupt" in rebuilt.stderr and "rebuilt it" in rebuilt.stderr
    sqlite3.connect(index).execute("SELECT count(*) FROM runs").fetchone()
    outbox = git_project / "runs" / ".xp" / "outbox" / "log"
    outbox.mkdir(parents=True)
    (outbox / "0001.json").write_text('{"event": {"ty')
    (git_project / "xp.toml").write_text(
        'runs = "runs"\nlink = []\n[hooks.log]\ntype = "command"\ncommand = "true"\n'
    )
    flushed = xp("hooks", "flush", cwd=git_project)
    assert "Traceback" not in flushed.output, flushed.output
    assert (outbox / "0001.corrupt").is_file()
    assert (first / "run.json").is_file() and (second / "metrics.jsonl").is_file()


SLOW_PY = textwrap.dedent(
    """\
    import time
    for i in range(30):
        print(f"line {i}", flush=True)
        time.sleep(0.1)
    """
)


def test_runs_root_that_disappears_mid_run(git_project: Path, xp: Callable[..., Result]) -> None:
    """Fault: the runs root is renamed away (as an unmount would) while a run writes, and
    comes back 2 s later.
    Promise: the runner says so, the run goes on, its whole output is there once the root is
    back, and the run is recorded finished."""
    (git_project / "slow.py").write_text(SLOW_PY)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-q", "-m", "slow")
    env = {**os.environ, "XP_HEARTBEAT_INTERVAL": "0.2"}
    proc = subprocess.Popen([*XP, "run", "--", "python", "slow.py"], cwd=git_project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    runs, away = git_project / "runs", git_project / "runs-away"
    wait_for(lambda: any((r / "output.log").is_file() and "line 3" in (r / "output.log").read_text()
                         for r in runs_of(runs)))  # fmt: skip
    runs.rename(away)
    time.sleep(2.0)
    away.rename(runs)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "cannot reach" in err
    (run,) = runs_of(runs)
    log = (run / "output.log").read_text()
    assert all(f"line {i}\n" in log for i in range(30))
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


CHATTY_PY = textwrap.dedent(
    """\
    import sys
    line = "x" * 99 + "\\n"
    for i in range(15_000):  # 1.5 MB of output
        sys.stdout.write(line)
    print("the end")
    """
)


def test_output_that_cannot_be_written_is_kept_on_local_disk(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """Fault: output.log cannot grow (a 1 MB file-size limit; the program prints 1.5 MB).
    Promise: the run goes on to its end, is marked failed with the reason, and none of the
    output is lost: what output.log could not take is kept in the local spool folder."""
    (git_project / "chatty.py").write_text(CHATTY_PY)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-q", "-m", "chatty")
    proc = subprocess.run([*XP, "run", "--", "python", "chatty.py"], cwd=git_project,
                          capture_output=True, timeout=120,
                          preexec_fn=_limit_file_size(1_000_000))  # fmt: skip
    assert proc.returncode == 1
    (run,) = runs_of(git_project / "runs")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "cannot write output.log" in info["reason"]
    spool = Path(os.environ["XP_CACHE_DIR"]) / "spool" / f"{run.name}.output.log"
    kept = (run / "output.log").read_bytes() + spool.read_bytes()
    assert kept.count(b"x" * 99 + b"\n") == 15_000 and kept.endswith(b"the end\n")
    assert f"stays in {spool}" in proc.stderr.decode()
