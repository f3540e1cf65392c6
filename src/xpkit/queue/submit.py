"""Putting runs in the queue: `xp submit` and `xp requeue`.

Submit: the run is created holding the submitter's claim, published, given its queue
marker, then released; a submitter killed at any point leaves either nothing visible
or a queued run with a dead claim, which the next scheduler pass puts in the queue.

Requeue happens at most once per attempt of a run: the original records its
replacement in `.requeued.<attempt>`, created exclusively, before the replacement
becomes visible. A resumable run is requeued as its own next attempt (same name,
same directory); any other as a new trial of its experiment.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpkit.capture.git import create_bundle
from xpkit.errors import QueueError
from xpkit.execute.launch import SweepRequest, plan, plan_rerun
from xpkit.execute.prepared import bundle_path
from xpkit.hooks import events
from xpkit.queue import files
from xpkit.settings import Settings
from xpkit.store import rundir as rd
from xpkit.store.create import (
    NewRun,
    Provenance,
    capture_provenance,
    ensure_runs_root,
    publish_run,
    stage_run,
    staging_dir,
)
from xpkit.store.pins import snapshot_pin
from xpkit.store.rundir import RunDir, write_json_atomic

REQUEUEABLE = ("failed", "killed", "lost", "cancelled")


@dataclass
class QueueRequest:
    priority: int = 0
    gpus: int | None = None  # None: the experiment's own
    labels: tuple[str, ...] = ()
    resumable: bool | None = None  # None: the experiment's own


def submit_request(settings: Settings, request: SweepRequest, queue: QueueRequest) -> list[RunDir]:
    """`xp submit`: plan, snapshot, queue."""
    planned = plan(settings, request)
    ensure_runs_root(settings.runs)
    with snapshot_pin(settings.runs) as pin:
        provenance = capture_provenance(settings, request.no_git)
        if provenance.snapshot is not None:
            pin.set(provenance.snapshot.snapshot)
        return submit(settings, planned, provenance, queue)


def submit(
    settings: Settings, planned: list[NewRun], provenance: Provenance, request: QueueRequest,
    *, announce: bool = True,
) -> list[RunDir]:  # fmt: skip
    """Create the runs as `queued` and put them in the queue. The snapshot is also
    stored as a bundle, for workers on other machines. `announce`: tell the hooks a
    sweep was submitted (`xp sweep` announces its own, trial by trial)."""
    ensure_runs_root(settings.runs)
    if request.gpus is not None and request.gpus < 0:
        raise QueueError(f"--gpus must be 0 or more, got {request.gpus}")
    if provenance.snapshot is not None:
        sha = provenance.snapshot.snapshot
        create_bundle(provenance.project, sha, bundle_path(settings.runs, sha))
    holder = files.me("submit")
    created = []
    for new in planned:
        if request.gpus is not None:
            new.gpus = request.gpus
        if request.resumable is not None:
            new.resumable = request.resumable
        new.priority, new.labels = request.priority, list(request.labels)
        staged = stage_run(settings.runs, new, provenance, claim=holder.to_json())
        created.append(publish_run(settings.runs, staged))
    sweep = planned[0].sweep if planned else None
    if sweep and announce and events.specs_of(settings):
        events.remember_runs(settings, sweep, [r.name for r in created], planned=len(created))
        events.sweep_submitted(settings, created)
    for run_dir in created:
        files.release(settings.runs, run_dir)
    return created


def _marker(run_dir: RunDir, attempt: int) -> Path:
    return run_dir.file(f".requeued.{attempt}")


def requeued_as(run_dir: RunDir, attempt: int) -> dict[str, Any] | None:
    try:
        data = json.loads(_marker(run_dir, attempt).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _link_marker(run_dir: RunDir, attempt: int, record: dict[str, Any]) -> bool:
    temp = run_dir.path / f".requeued.{os.getpid()}.{os.urandom(3).hex()}.tmp"
    temp.write_text(json.dumps(record) + "\n")
    try:
        os.link(temp, _marker(run_dir, attempt))
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)


def _already(original: RunDir, record: dict[str, Any]) -> QueueError:
    if record.get("attempt"):
        return QueueError(
            f"{original.name} was already requeued, as its attempt {record['attempt']}"
        )
    return QueueError(f"{original.name} was already requeued as {record.get('copy')}")


def requeue(settings: Settings, original: RunDir, *, allow_running: bool = False) -> str:
    """Put a failed, killed, cancelled or lost run back in the queue, once. Returns the
    name of what is queued: the run itself (its next attempt) or its new trial.
    `allow_running`: the caller holds the run and has just stopped it."""
    info = original.read_run()
    status = rd.status_of(original, info)
    if status not in REQUEUEABLE and not (allow_running and status == "running"):
        raise QueueError(
            f"{original.name} is {status}; only failed, killed, cancelled or lost runs can be "
            "requeued (use `xp rerun` to repeat a finished one)"
        )
    attempt = int(info.get("attempt") or 1)
    record = requeued_as(original, attempt)
    if record is not None and not _interrupted(settings.runs, original, info, record):
        raise _already(original, record)
    if info.get("resumable"):
        return _next_attempt(settings, original, info, attempt, retake=record is not None)
    return _new_trial(settings, original, info, attempt, retake=record is not None)


def _interrupted(
    runs_root: Path, original: RunDir, info: dict[str, Any], record: dict[str, Any]
) -> bool:
    """A requeue whose process died before it took effect: take it over."""
    if files.holder_alive(runs_root, original, record.get("by") or {}):
        return False
    if record.get("attempt"):
        return int(info.get("attempt") or 1) < int(record["attempt"])
    copy = str(record.get("copy"))
    return not (runs_root / copy).exists() and not (staging_dir(runs_root) / copy).exists()


def _next_attempt(
    settings: Settings, run_dir: RunDir, info: dict[str, Any], attempt: int, *, retake: bool
) -> str:
    holder = files.me("requeue")
    record = {"attempt": attempt + 1, "by": holder.to_json()}
    if retake:
        write_json_atomic(_marker(run_dir, attempt), record)
    elif not _link_marker(run_dir, attempt, record):
        raise _already(run_dir, requeued_as(run_dir, attempt) or {})
    files.create_claim(run_dir, holder, replace=True)
    attempts = list(info.get("attempts") or [])
    if not any(a.get("attempt") == attempt for a in attempts):  # lost: no runner wrote it
        attempts.append(
            {
                "attempt": attempt,
                "host": info.get("host"),
                "gpus": info.get("gpus"),
                "worker": info.get("worker"),
                "started": info.get("started"),
                "ended": info.get("ended") or rd.now(),
                "exit_code": info.get("exit_code"),
                "status": rd.status_of(run_dir, info),
                "reason": info.get("reason"),
            }
        )
    info = run_dir.update_run(
        status="queued",
        attempt=attempt + 1,
        attempts=attempts,
        ended=None,
        exit_code=None,
        pid=None,
        reason=None,
    )
    run_dir.file(rd.CANCEL).unlink(missing_ok=True)
    files.release(settings.runs, run_dir, info)
    return run_dir.name


def _new_trial(
    settings: Settings, original: RunDir, info: dict[str, Any], attempt: int, *, retake: bool
) -> str:
    planned, provenance = plan_rerun(settings, original, require_snapshot=False)
    planned.priority = int(info.get("priority") or 0)
    planned.labels = list(info.get("labels") or ())
    planned.gpus = int(info.get("gpus_requested") or 0)
    planned.requeue_of = original.name
    planned.search = info.get("search")  # a sweep's trial stays that trial
    planned.sweep = info.get("sweep") or planned.sweep
    holder = files.me("requeue")
    staged = stage_run(settings.runs, planned, provenance, claim=holder.to_json())
    record = {"copy": staged.name, "by": holder.to_json(), "time": time.time()}
    if retake:
        write_json_atomic(_marker(original, attempt), record)
    elif not _link_marker(original, attempt, record):
        shutil.rmtree(staged.path, ignore_errors=True)  # never visible: nothing is lost
        raise _already(original, requeued_as(original, attempt) or {})
    new = publish_run(settings.runs, staged)
    finish_new_trial(settings.runs, new)
    return new.name


def finish_new_trial(runs_root: Path, new: RunDir) -> None:
    """The last steps of a requeue as a new trial (also the recovery of one whose
    process died): the original names its copy, the copy enters the queue."""
    info = new.read_run()
    original = RunDir(runs_root / str(info.get("requeue_of")))
    try:
        if original.read_run().get("requeued_as") != new.name:
            original.update_run(requeued_as=new.name)
    except Exception:
        pass
    files.release(runs_root, new, info)


def requeue_ref(settings: Settings, ref: str) -> str:
    from xpkit.store.query import resolve_run

    return requeue(settings, resolve_run(settings.runs, ref))


def submit_target(
    settings: Settings,
    target: tuple[str, ...],
    *,
    params: dict[str, Any],
    sets: dict[str, Any],
    name: str | None,
    tags: list[str],
    no_git: bool,
    queue: QueueRequest,
    yes: bool = False,
) -> list[RunDir]:
    """`xp submit TARGET...`: an experiment file, or a command."""
    is_file = len(target) == 1 and target[0].endswith(".toml")
    request = SweepRequest(
        experiment_file=Path(target[0]) if is_file else None,
        argv=None if is_file else list(target),
        params=params,
        sets=sets,
        name=name,
        tags=tags,
        no_git=no_git,
        yes=yes,
        queued=True,
    )
    return submit_request(settings, request, queue)
