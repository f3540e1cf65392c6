"""The disk fills up, files are corrupted, the runs root goes away."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import XP, Result, git, read_run, runs_of, wait_for
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


FILL_PY = textwrap.dedent(
    """\
    import os, time
    print("working", flush=True)
    time.sleep(1)  # the runner has written it to output.log
    fd = os.open(os.path.join(os.environ["XP_RUN_DIR"], "artifacts", "fill.bin"),
                 os.O_WRONLY | os.O_CREAT)
    for size in (65536, 1):  # to the last byte: nothing more fits, not even run.json
        try:
            while True:
                os.write(fd, b"x" * size)
        except OSError:
            pass
    os.close(fd)  # and it prints nothing more: its output is whole
    """
)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MB filesystem (tmpfs), where a write fails with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_keeps_the_outcome_and_says_so(
    git_project: Path, xp: Callable[..., Result], tiny_disk: Path
) -> None:
    """Fault: the runs root is on a 4 MB filesystem that the program fills (ENOSPC, not a
    file-size limit) just before it exits 0.
    Promise: no traceback; `xp run` says it could not record the end and where it kept it;
    a new `xp run` on the full disk is a clear error that creates nothing; once space is
    free, `xp ls` shows the run finished with exit code 0, not lost."""
    (git_project / "fill.py").write_text(FILL_PY)
    (git_project / "xp.toml").write_text(f'runs = "{tiny_disk / "runs"}"\n')
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "fill")
    env = {"XP_GONE_WAIT": "2"}
    result = xp("run", "--", "python", "fill.py", cwd=git_project, env=env)
    assert "Traceback" not in result.output, result.output
    assert "cannot record how" in result.stderr and "(finished, exit code 0)" in result.stderr
    assert "kept in" in result.stderr
    (run,) = runs_of(tiny_disk / "runs")
    again = xp("run", "--", "python", "-c", "pass", cwd=git_project, env=env)
    assert again.returncode != 0 and "Traceback" not in again.output, again.output
    assert "No space left on device" in again.stderr or "is full" in again.stderr
    assert runs_of(tiny_disk / "runs") == [run]
    (run / "artifacts" / "fill.bin").unlink()  # space again
    listing = xp("ls", "--json", cwd=git_project, env=env)
    assert listing.returncode == 0, listing.output
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["exit_code"] == 0, info
    assert [a["status"] for a in info["attempts"]] == ["finished"]
    json_files_whole(tiny_disk / "runs")
    tools_still_work(xp, git_project, env)


def running(run: Path) -> bool:
    """Whether run.json says `running` (read while the runner may be rewriting it)."""
    try:
        return bool(read_run(run).get("status") == "running")
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("then", ["trashed", "trash-emptied"])
def test_a_paused_runner_whose_run_was_removed_ends_without_hanging(
    git_project: Path, xp: Callable[..., Result], then: str
) -> None:
    """Fault: the runner of a run is paused (SIGSTOP) until the run shows `lost`, the run
    is `xp rm`ed (and the trash emptied), then the runner resumes.
    Promise: `xp run` ends within its bounded wait instead of waiting forever; the end is
    recorded in the trashed run, or kept on local disk when the run is gone."""
    env = {**os.environ, "XP_HEARTBEAT_INTERVAL": "0.2", "XP_HEARTBEAT_TIMEOUT": "1",
           "XP_GONE_WAIT": "3"}  # fmt: skip
    runner = subprocess.Popen([*XP, "run", "--", "python", "-c", "import time; time.sleep(8)"],
                              cwd=git_project, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    runs = git_project / "runs"
    # Paused once the run is `running`: paused between its first heartbeat and `running`,
    # its runner (alive) holds a run that stays `queued`, which is right but not this fault.
    wait_for(lambda: bool(runs_of(runs)) and running(runs_of(runs)[0]))
    (run,) = runs_of(runs)
    os.kill(runner.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: "lost" in xp("ls", cwd=git_project, env=env).stdout, timeout=60)
        removed = xp("rm", run.name, "--yes", cwd=git_project, env=env)
        assert removed.returncode == 0, removed.output
        if then == "trash-emptied":
            assert xp("trash", "empty", "--yes", cwd=git_project, env=env).returncode == 0
    finally:
        os.kill(runner.pid, signal.SIGCONT)
    out, err = runner.communicate(timeout=60)  # never "waiting for it to come back" forever
    assert "Traceback" not in out + err
    trashed = runs / ".xp" / "trash" / run.name
    if then == "trashed":
        assert "moved to the trash while it ran" in err
        assert json.loads((trashed / "run.json").read_text())["status"] == "finished"
    else:
        assert not trashed.exists() and "cannot record how" in err and "kept in" in err
