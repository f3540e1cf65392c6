"""kill -9 of `xp sweep`'s controller and of a worker running its trials; and every state
a killed controller can leave (built by hand), continued by `xp sweep FILE` again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, wait_for
from reliability.conftest import iterations
from sweeps import check_complete, detached_pid, sweep_file, trial_runs

pytestmark = pytest.mark.integration
optuna = pytest.importorskip("optuna", reason="xp sweep needs optuna (pip install 'xpkit[sweep]')")
FAST_LIVENESS = {"XP_HEARTBEAT_INTERVAL": "0.2", "XP_HEARTBEAT_TIMEOUT": "2"}


def study_of(expid: str) -> optuna.Study:
    journal = next((Path(os.environ["XP_CACHE_DIR"]) / "sweeps").rglob(f"{expid}.journal"))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    return optuna.load_study(study_name=expid, storage=storage)


def check_study(expid: str, trials: int) -> None:
    """The study the controller kept: exactly `trials` trials, each key once, none left
    RUNNING."""
    study = study_of(expid)
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and "WAITING" not in states, states
    assert sorted(t.user_attrs["key"] for t in study.trials) == list(range(trials))


def test_controller_killed_9_at_random_moments_then_continued(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    """Fault: `xp sweep` killed with SIGKILL at seeded random moments (0.05-2.5 s after
    each start, 3 kills per sweep), then started again until it ends.
    Promise: the sweep ends with exactly `trials` trials, each with one run (none lost,
    none duplicated), no trial left RUNNING in the study, never more than `parallel`
    trials queued or running."""
    worker_procs("--max-jobs", "3", cwd=git_project, env=FAST_LIVENESS)
    for index in range(iterations(2, 30)):
        rng = random.Random(1000 + index)
        expid = f"kill{index:02d}"
        path = sweep_file(git_project, expid=expid, trials=9, parallel=3, gpus=0, steps=4,
                          pause=0.05, pruner='"none"')  # fmt: skip
        for _ in range(3):
            controller = subprocess.Popen([*XP, "sweep", str(path)], cwd=git_project,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(rng.uniform(0.05, 2.5))
            controller.send_signal(signal.SIGKILL)
            controller.wait()
            active = [r for r in trial_runs(runs_root, expid).values()
                      if r[-1]["status"] in ("queued", "running")]  # fmt: skip
            assert len(active) <= 3
        final = xp("sweep", str(path), cwd=git_project, timeout=300)
        assert final.returncode == 0, final.output
        found = check_complete(runs_root, expid, 9)
        assert all(len(runs) == 1 for runs in found.values()), found
        assert {runs[-1]["status"] for runs in found.values()} == {"finished"}
        check_study(expid, 9)


def test_worker_killed_9_turns_its_trial_into_a_retry(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    """Fault: the worker running a sweep's trials killed with SIGKILL (its programs too).
    Promise: each trial it held is retried once by the controller as a run carrying the
    same trial, which another worker finishes; the sweep ends with exactly `trials`
    trials and nothing left running."""
    path = sweep_file(git_project, expid="wkill9", trials=4, parallel=2, gpus=0, steps=30,
                      pause=0.1, pruner='"none"')  # fmt: skip
    victim = worker_procs("--max-jobs", "2", cwd=git_project, env=FAST_LIVENESS)
    controller = subprocess.Popen([*XP, "sweep", str(path)], cwd=git_project,
                                  env={**os.environ, **FAST_LIVENESS}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for(lambda: sum(r[-1]["status"] == "running"
                             for r in trial_runs(runs_root, "wkill9").values()) == 2, timeout=60)  # fmt: skip
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        worker_procs("--max-jobs", "2", cwd=git_project, env=FAST_LIVENESS)
        output, _ = controller.communicate(timeout=300)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 0, output
    found = check_complete(runs_root, "wkill9", 4)
    retried = [runs for runs in found.values() if len(runs) == 2]
    assert len(retried) == 2, {k: [r["status"] for r in v] for k, v in found.items()}
    for lost, copy in retried:
        assert lost["status"] == "lost" and copy["status"] == "finished"
        assert copy["requeue_of"] == lost["name"] and copy["params"] == lost["params"]
    assert output.count("was lost; retried as") == 2, output
    check_study("wkill9", 4)


def test_states_a_killed_controller_leaves_are_finished_by_the_next(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    """Fault: the controller killed between ask and submit (a RUNNING trial with no run),
    mid-write of its journal (a last line without its newline), holding Optuna's journal
    lock, and the journal lost altogether (a new machine).
    Promise: the next `xp sweep FILE` submits the asked trial with its suggested params,
    repairs or rebuilds the journal from the runs, and ends with exactly `trials` trials."""
    path = sweep_file(git_project, expid="state1", trials=4, parallel=2, gpus=0, steps=2,
                      pause=0.0, pruner='"none"')  # fmt: skip
    first = xp("sweep", str(path), "--detach", cwd=git_project)
    assert first.returncode == 0, first.output
    pid = detached_pid(first)
    wait_for(lambda: len(trial_runs(runs_root, "state1")) == 2, timeout=60)
    os.kill(pid, signal.SIGKILL)
    # Between ask and submit: the study has a third trial that no run carries.
    study = study_of("state1")
    asked = study.ask({"x": optuna.distributions.FloatDistribution(-5, 5),
                       "y": optuna.distributions.FloatDistribution(-5, 5)})  # fmt: skip
    asked.set_user_attr("key", 2)
    journal = next((Path(os.environ["XP_CACHE_DIR"]) / "sweeps").rglob("state1.journal"))
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 2, "us')  # cut mid-write
    os.symlink(journal, f"{journal}.lock")  # Optuna's lock, never released
    worker_procs("--max-jobs", "2", cwd=git_project, env=FAST_LIVENESS)
    started = time.monotonic()
    again = xp("sweep", str(path), cwd=git_project, timeout=300)
    assert again.returncode == 0, again.output
    assert time.monotonic() - started < 60  # the stale lock did not make it wait
    found = check_complete(runs_root, "state1", 4)
    params = found[2][0]["params"]
    assert (params["x"], params["y"]) == (asked.params["x"], asked.params["y"])
    check_study("state1", 4)
    # A machine without the journal: rebuilt from the runs, the best the same.
    best = json.loads(xp("sweep", str(path), "--status", "--json", cwd=git_project).stdout)["best"]
    journal.unlink()
    rebuilt = xp("sweep", str(path), cwd=git_project, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.output
    assert "rebuilding it from the runs of 4 trial(s)" in rebuilt.stdout
    assert f"best: trial {best['key']} ({best['run']})" in rebuilt.stdout
    check_study("state1", 4)
    forced = xp("sweep", str(path), "--rebuild", cwd=git_project, timeout=120)
    assert forced.returncode == 0 and "the old journal is kept as" in forced.stdout
    assert len(list(journal.parent.glob("state1.journal.*.bad"))) == 1
    check_study("state1", 4)


KILLS_ITS_WORKER = """\
import json, os, signal, time
claim = json.load(open(os.path.join(os.environ["XP_RUN_DIR"], ".claim")))
time.sleep(0.5)
os.kill(claim["pid"], signal.SIGKILL)
time.sleep(1)
"""


def test_a_trial_lost_twice_fails_and_the_sweep_ends(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    """Fault: a trial whose every run kills its worker with SIGKILL.
    Promise: the trial is retried once, then told FAIL ("lost twice"); the controller
    ends; no run of it is left queued or running."""
    (git_project / "killer.py").write_text(KILLS_ITS_WORKER)
    path = sweep_file(git_project, expid="lost02", trials=1, parallel=1, gpus=0,
                      command="python killer.py", pruner='"none"')  # fmt: skip
    controller = subprocess.Popen([*XP, "sweep", str(path)], cwd=git_project,
                                  env={**os.environ, **FAST_LIVENESS}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        worker = worker_procs("--max-jobs", "1", cwd=git_project, env=FAST_LIVENESS)
        deadline = time.monotonic() + 180
        while controller.poll() is None and time.monotonic() < deadline:
            if worker.poll() is not None:  # killed by its run: the next worker recovers it
                worker = worker_procs("--max-jobs", "1", cwd=git_project, env=FAST_LIVENESS)
            time.sleep(0.2)
        output, _ = controller.communicate(timeout=30)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 0, output
    (runs,) = trial_runs(runs_root, "lost02").values()
    assert [r["status"] for r in runs] == ["lost", "lost"], runs
    assert "lost twice" in output and "done: 1 trial(s) (1 failed)" in output, output
    (trial,) = study_of("lost02").trials
    assert trial.state.name == "FAIL" and "lost twice" in trial.user_attrs["reason"]


def test_a_preempted_resumable_trial_stays_the_same_trial(
    git_project: Path, runs_root: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    """Fault: a running trial of a resumable experiment preempted (`xp cancel --requeue`).
    Promise: it goes back to the queue as its next attempt and finishes as the same
    trial: one run, attempt 2, told COMPLETE, never FAIL in between."""
    path = sweep_file(git_project, expid="resume", trials=2, parallel=2, gpus=0, steps=20,
                      pause=0.1, pruner='"none"', extra="resumable = true")  # fmt: skip
    worker_procs("--max-jobs", "2", cwd=git_project, env=FAST_LIVENESS)
    controller = subprocess.Popen([*XP, "sweep", str(path)], cwd=git_project,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for(lambda: any(r[-1]["status"] == "running"
                             for r in trial_runs(runs_root, "resume").values()), timeout=60)  # fmt: skip
        (name,) = [r[-1]["name"] for r in trial_runs(runs_root, "resume").values()
                   if r[-1]["status"] == "running"][:1]  # fmt: skip
        assert xp("cancel", "--requeue", name, cwd=git_project).returncode == 0
        output, _ = controller.communicate(timeout=240)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 0, output
    found = check_complete(runs_root, "resume", 2)
    preempted = next(runs for runs in found.values() if runs[-1]["name"] == name)
    assert len(preempted) == 1 and preempted[0]["attempt"] == 2, preempted
    assert preempted[0]["status"] == "finished" and "failed" not in output, output
    assert {t.state.name for t in study_of("resume").trials} == {"COMPLETE"}
