"""`xp sweep` end to end: real Optuna, real `xp worker` processes on fake GPUs, a tiny
numpy objective with a known optimum (tests/sweeps.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FakeGpus, Result, git, wait_for
from sweeps import (
    ActiveCount,
    check_complete,
    check_tpe_sweep,
    detached_pid,
    sweep_file,
    trial_runs,
)

pytestmark = pytest.mark.integration
optuna = pytest.importorskip("optuna", reason="xp sweep needs optuna (pip install 'xpkit[sweep]')")


def test_tpe_sweep_on_two_local_workers_finds_the_optimum_and_prunes(
    git_project: Path, runs_root: Path, gpu_file: FakeGpus, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    path = sweep_file(git_project, expid="tpe030", trials=30, parallel=3, steps=12, pause=0.25)
    worker_procs("--gpus", "0,2", cwd=git_project)
    worker_procs("--gpus", "3", cwd=git_project)
    watcher = ActiveCount(runs_root, "tpe030")
    watcher.start()
    result = xp("sweep", str(path), cwd=git_project, timeout=900)
    watcher.done.set()
    assert result.returncode == 0, result.output
    best = check_tpe_sweep(runs_root, "tpe030", watcher)
    found = trial_runs(runs_root, "tpe030")
    # Every trial ran on a fake GPU of one of the two workers, one GPU each.
    assert {tuple(runs[-1]["gpus"]) for runs in found.values()} <= {(0,), (2,), (3,)}
    assert "done: 30 trial(s)" in result.stdout and "best: trial" in result.stdout
    # What a user looks at afterwards.
    status = xp("sweep", str(path), "--status", cwd=git_project)
    assert status.returncode == 0, status.output
    assert "trials: 30 of 30" in status.stdout and "best so far: trial" in status.stdout
    assert best in status.stdout and "controller: not running" in status.stdout
    listed = xp("ls", "--exp", "tpe030", "--sort", "loss", "--status", "finished", "--json",
                cwd=git_project)  # fmt: skip
    assert json.loads(listed.stdout)[0]["name"] == best, listed.output
    # The study the controller kept agrees: 30 trials, none left running.
    journal = next((Path(os.environ["XP_CACHE_DIR"]) / "sweeps").rglob("tpe030.journal"))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    study = optuna.load_study(study_name="tpe030", storage=storage)
    states = [t.state.name for t in study.trials]
    assert len(states) == 30 and "RUNNING" not in states
    assert sorted(t.user_attrs["key"] for t in study.trials) == list(range(30))
    assert study.best_trial.user_attrs["run"] == best


def test_a_failing_program_stops_the_search_and_a_fix_continues_it(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    path = sweep_file(git_project, expid="broken", trials=8, parallel=2, gpus=0, steps=2,
                      pause=0.0, pruner='"none"')  # fmt: skip
    good = (git_project / "quad.py").read_text()
    (git_project / "quad.py").write_text("raise SystemExit('bug')\n")
    git(git_project, "commit", "-qam", "a bug")
    worker_procs("--max-jobs", "2", cwd=git_project)
    stopped = xp("sweep", str(path), cwd=git_project, timeout=300)
    assert stopped.returncode == 0, stopped.output
    assert "5 trials in a row failed" in stopped.stdout, stopped.stdout
    assert "`xp logs broken_" in stopped.stdout
    told = trial_runs(runs_root, "broken")
    assert 5 <= len(told) < 8 and all(r[-1]["status"] == "failed" for r in told.values())
    (git_project / "quad.py").write_text(good)
    git(git_project, "commit", "-qam", "fixed")
    again = xp("sweep", str(path), cwd=git_project, timeout=300)
    assert again.returncode == 0, again.output
    assert "continuing:" in again.stdout
    found = check_complete(runs_root, "broken", 8)
    assert [runs[-1]["status"] for runs in found.values()].count("finished") == 8 - len(told)


def test_a_second_controller_is_refused_and_detach_and_status_work(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    path = sweep_file(git_project, expid="detach", trials=4, parallel=2, gpus=0, steps=3,
                      pause=0.2, pruner='"none"')  # fmt: skip
    detached = xp("sweep", str(path), "--detach", cwd=git_project)
    assert detached.returncode == 0, detached.output
    pid = detached_pid(detached)
    try:
        second = xp("sweep", str(path), cwd=git_project)
        assert second.returncode == 2
        assert f"already controlled by pid {pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        wait_for(lambda: len(trial_runs(runs_root, "detach")) == 2, timeout=60)
        status = xp("sweep", str(path), "--status", cwd=git_project).stdout
        assert f"controller: running, pid {pid}" in status and "2 queued" in status, status
        assert len(trial_runs(runs_root, "detach")) == 2  # parallel = 2: no more queued
        worker_procs("--max-jobs", "2", cwd=git_project)
        wait_for(lambda: not _alive(pid), timeout=120)
    finally:
        if _alive(pid):
            os.kill(pid, 9)
    check_complete(runs_root, "detach", 4)
    as_json = json.loads(xp("sweep", str(path), "--status", "--json", cwd=git_project).stdout)
    assert as_json["counts"] == {"finished": 4} and as_json["controller"] is None
    assert as_json["best"]["value"] == min(t["value"] for t in as_json["trials"])
    log = (runs_root / ".xp" / "sweeps" / "detach.log").read_text()
    assert "done: 4 trial(s)" in log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[1].split()[0] != "Z"


BAD_SEARCHES = [
    ('[search]\nmetric = "loss"\ngoal = "minimise"\ntrials = 3\n[search.params]\nx = { low = 0.0, high = 1.0 }',
     ":5: search.goal must be 'minimize' or 'maximize', got 'minimise'"),
    ('[search]\nmetric = "loss"\ngoal = "minimize"\ntrails = 3\n[search.params]\nx = { low = 0.0, high = 1.0 }',
     "search.trails: unknown key; did you mean 'trials'?"),
    ('[search]\nmetric = "loss"\ngoal = "minimize"\ntrials = 3\n[search.params]\nx = { low = 1.0, high = 0.0 }',
     "search.params.x: low (1.0) must be less than high (0.0)"),
    ('[search]\nmetric = "loss"\ngoal = "minimize"\nmethod = "bayes"\ntrials = 3\n[search.params]\nx = [1, 2]',
     "search.method must be one of tpe, random, cmaes, grid, qmc, got 'bayes'"),
    ('[search]\nmetric = "loss"\ngoal = "minimize"\n[search.params]\nx = [1, 2]',
     "[search] needs trials = N and/or budget = '2h'"),
]  # fmt: skip


@pytest.mark.parametrize(("search", "message"), BAD_SEARCHES,
                         ids=["goal", "typo", "low-high", "method", "no-end"])  # fmt: skip
def test_bad_search_tables_are_clear_errors(
    git_project: Path, runs_root: Path, xp: Callable[..., Result], search: str, message: str
) -> None:
    path = git_project / "experiments" / "toy" / "06_bad.xp.toml"
    path.write_text(f'id = "bad001"\ncommand = "python quad.py --x {{x}}"\n{search}\n')
    for command in (["sweep", str(path)], ["sweep", str(path), "--status"]):
        result = xp(*command, cwd=git_project)
        assert result.returncode == 2, result.output
        assert message in result.stderr and str(path) in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not runs_root.exists() or not list(runs_root.glob("bad001_*"))


def test_files_without_search_and_searches_run_by_hand_are_refused(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    grid = git_project / "experiments" / "toy" / "01_base.xp.toml"
    result = xp("sweep", str(grid), cwd=git_project)
    assert result.returncode == 2 and "has no [search] table" in result.stderr
    path = sweep_file(git_project, expid="byhand", trials=2, parallel=1)
    for command in ("run", "submit"):
        result = xp(command, str(path), cwd=git_project)
        assert result.returncode == 2, result.output
        assert f"start it with `xp sweep {path}`" in result.stderr
    text = path.read_text().replace('goal = "minimize"', 'goal = "maximize"')
    started = time.time()
    first = xp("sweep", str(path), "--detach", cwd=git_project)
    assert first.returncode == 0, first.output
    wait_for(lambda: bool(trial_runs(git_project / "runs", "byhand")), timeout=60)
    pid = detached_pid(first)
    os.kill(pid, 9)
    path.write_text(text)
    changed = xp("sweep", str(path), cwd=git_project)
    assert changed.returncode == 2, changed.output
    assert "its [search] (params, method, metric, goal or seed) changed" in changed.stderr
    assert f"xp new NEW --from {path}" in changed.stderr
    assert time.time() - started < 60


def test_a_trial_moved_to_the_trash_is_told_failed_not_queued_again(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    path = sweep_file(git_project, expid="trash1", trials=3, parallel=2, gpus=0, steps=2,
                      pause=0.0, pruner='"none"')  # fmt: skip
    first = xp("sweep", str(path), "--detach", cwd=git_project)
    assert first.returncode == 0, first.output
    pid = detached_pid(first)
    wait_for(lambda: sorted(trial_runs(runs_root, "trash1")) == [0, 1], timeout=60)
    # While the controller watches: `xp rm` of a queued trial fails that trial.
    gone = trial_runs(runs_root, "trash1")[0][0]["name"]
    assert xp("rm", "--yes", gone, cwd=git_project).returncode == 0
    wait_for(lambda: sorted(trial_runs(runs_root, "trash1")) == [1, 2], timeout=30)
    assert _alive(pid)
    os.kill(pid, 9)
    # While no controller runs: the next one finds the trial's run in the trash.
    also = trial_runs(runs_root, "trash1")[1][0]["name"]
    assert xp("rm", "--yes", also, cwd=git_project).returncode == 0
    worker_procs("--max-jobs", "2", cwd=git_project)
    again = xp("sweep", str(path), cwd=git_project, timeout=120)
    assert again.returncode == 0, again.output
    assert f"{also} was moved to the trash" in again.stdout
    assert "done: 3 trial(s) (1 finished, 2 failed)" in again.stdout, again.stdout
    assert sorted(trial_runs(runs_root, "trash1")) == [2]  # nothing queued again
    log = (runs_root / ".xp" / "sweeps" / "trash1.log").read_text()
    assert f"{gone} was moved to the trash" in log
    assert {p.name for p in (runs_root / ".xp" / "trash").iterdir() if p.is_dir()} == {gone, also}
