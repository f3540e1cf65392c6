"""What every scheduler pass does for runs whose holder died, and `xp cancel`.

A holder (submitter, worker, Ray dispatcher, `xp run`, `xp cancel`, `xp requeue`) can
be killed between any two of its steps. Each step leaves a state this pass finishes
or undoes, so nothing stays where no worker would take it:

- a staged run whose creator died: published if it is the recorded copy of a requeue,
  else removed (it was never visible);
- queued with no claim and no marker (submitter died before queuing it): queued;
- queued and claimed by a dead holder (claimed, not started): back in the queue, or
  `lost` if `xp run` held it (the program never started), or cancelled if asked;
- running and held by a dead holder: `lost`, then the requeue policy;
- a `.cancel` intent on a queued run nobody holds: cancelled.

One pass at a time per runs root (an exclusive lock file; one left by a dead pass is
broken after LOCK_STALE seconds or at once on its own host).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import QueueError, XpError
from xpkit.hooks import events
from xpkit.queue import files
from xpkit.queue.submit import finish_new_trial, requeue, requeued_as
from xpkit.settings import Settings
from xpkit.store import rundir as rd
from xpkit.store.create import publish_run, staging_dir
from xpkit.store.index import load_rows
from xpkit.store.locks import pid_alive
from xpkit.store.rundir import RunDir

LOCK_STALE = 60.0
STAGING_GRACE = 10.0  # a staged run without a readable claim this old was abandoned


@contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                host, pid = path.read_text().split()
                age = time.time() - path.stat().st_mtime
            except (OSError, ValueError):
                break
            if (host == socket.gethostname() and not pid_alive(int(pid))) or age > LOCK_STALE:
                path.unlink(missing_ok=True)
                continue
            break
        os.write(fd, me.encode())
        os.close(fd)
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


def cancel(runs_root: Path, run_dir: RunDir, *, requeue: bool = False) -> str:
    """Cancel a queued run, or ask the holder of a running one to stop it (and with
    `requeue`, to put a resumable run back as its next attempt). The intent is written
    first, so that a cancel killed halfway still takes effect."""
    info = run_dir.read_run()
    status = rd.status_of(run_dir, info)
    if requeue and not info.get("resumable"):
        raise QueueError(
            f"{run_dir.name} is not resumable; --requeue stops and requeues "
            "resumable runs only (`xp cancel` then `xp requeue` makes a new trial)"
        )
    if status not in ("queued", "running"):
        raise QueueError(
            f"{run_dir.name} is {status}; only queued and running runs can be cancelled"
        )
    if requeue and status == "queued" and files.read_claim(run_dir) is None:
        raise QueueError(f"{run_dir.name} is queued: nothing to stop and requeue (`xp cancel` "
                         "without --requeue cancels it)")  # fmt: skip
    files.write_cancel_intent(run_dir, requeue=requeue)
    taken = status == "queued" and not requeue
    taken = taken and files.claim(runs_root, run_dir.name, files.me("cancel"))
    if taken and run_dir.read_run().get("status") == "queued":  # not ended meanwhile
        _cancelled(run_dir, "cancelled while queued")
        return "cancelled"
    return "stopping"


def _cancelled(run_dir: RunDir, reason: str) -> None:
    run_dir.update_run(status="cancelled", ended=rd.now(), reason=reason)
    run_dir.file(rd.CANCEL).unlink(missing_ok=True)


def recover(settings: Settings, *, requeue_lost: bool, say: Callable[[str], None]) -> None:
    """One recovery pass over the runs root (skipped while another one runs)."""
    runs_root = settings.runs
    with _try_lock(runs_root / names.META_DIR / "queue" / ".recover.lock") as mine:
        if not mine:
            return
        _staged(runs_root, say)
        rows, _ = load_rows(runs_root, statuses=("queued", "running", "lost"))
        for row in rows:
            run_dir = RunDir(runs_root / row.name)
            try:
                _recover_run(settings, run_dir, requeue_lost, say)
            except XpError as e:
                say(f"{row.name}: cannot recover: {e}")
            except OSError:
                continue  # removed meanwhile


def _staged(runs_root: Path, say: Callable[[str], None]) -> None:
    folder = staging_dir(runs_root)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        staged = RunDir(path)
        claim = files.read_claim(staged)
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            continue
        if claim is None and age < STAGING_GRACE:
            continue
        if claim is not None and files.holder_alive(runs_root, staged, claim):
            continue
        info = staged.read_optional(rd.RUN_JSON, {}) or {}
        original = info.get("requeue_of")
        if original and info.get("status") == "queued":
            copied = RunDir(runs_root / original)
            attempt = int((copied.read_optional(rd.RUN_JSON, {}) or {}).get("attempt") or 1)
            record = requeued_as(copied, attempt)
            if record and record.get("copy") == path.name:
                finish_new_trial(runs_root, publish_run(runs_root, staged))
                say(
                    f"finished the requeue of {original} as {path.name} (its requeue was "
                    "interrupted)"
                )
                continue
        shutil.rmtree(path, ignore_errors=True)


def _recover_run(
    settings: Settings, run_dir: RunDir, requeue_lost: bool, say: Callable[[str], None]
) -> None:
    runs_root = settings.runs
    info = run_dir.read_run()
    status = info.get("status")
    claim = files.read_claim(run_dir)
    alive = claim is not None and files.holder_alive(runs_root, run_dir, claim)
    if status == "queued":
        if alive:
            return
        intent = files.cancel_intent(run_dir)
        if claim is None:
            if intent is not None and not intent.get("requeue"):
                if files.claim(runs_root, run_dir.name, files.me("worker")):
                    _cancelled(run_dir, "cancelled while queued")
            elif not (files.queue_dir(runs_root) / run_dir.name).exists():
                files.enqueue_from_run(runs_root, run_dir, info)
                say(f"{run_dir.name}: put in the queue (its submitter stopped before it was)")
            return
        assert claim is not None
        files.create_claim(run_dir, files.me("worker"), replace=True)
        kind = claim.get("kind")
        if kind == "run":
            _lost(
                settings,
                run_dir,
                "`xp run` was stopped before the program started",
                say,
                requeue_lost=False,
            )
        elif intent is not None and not intent.get("requeue"):
            _cancelled(run_dir, "cancelled while queued")
        else:
            if info.get("requeue_of"):
                finish_new_trial(runs_root, run_dir)
            else:
                files.release(runs_root, run_dir, info)
            say(f"{run_dir.name}: back in the queue (its {_who(claim)} stopped before starting it)")
        return
    if status == "running":
        if claim is None:  # xp.init() standalone runs and older runs: their heartbeat
            if rd.status_of(run_dir, info) != "lost":
                return
        elif alive:
            return
        else:
            files.create_claim(run_dir, files.me("worker"), replace=True)
        who = f"its {_who(claim)}" if claim else "its process"
        _lost(settings, run_dir, f"{who} stopped while it ran", say, requeue_lost=requeue_lost)
        return
    if status == "lost" and requeue_lost:  # once: the requeue marker decides
        _requeue_once(settings, run_dir, say)


HOLDERS = {
    "worker": "worker",
    "ray": "Ray dispatcher",
    "run": "`xp run`",
    "submit": "submitter",
    "requeue": "`xp requeue`",
    "cancel": "`xp cancel`",
    "priority": "`xp top` priority change",
}


def _who(claim: dict[str, Any]) -> str:
    kind = HOLDERS.get(str(claim.get("kind")), str(claim.get("kind")))
    return f"{kind} ({claim.get('host')} pid {claim.get('pid')})"


def _lost(
    settings: Settings,
    run_dir: RunDir,
    reason: str,
    say: Callable[[str], None],
    *,
    requeue_lost: bool,
) -> None:
    run_dir.update_run(status="lost", ended=rd.now(), reason=reason)
    say(f"lost {run_dir.name}: {reason}")
    events.run_event(settings, run_dir, "run.lost")
    events.run_ended(settings, run_dir)
    if requeue_lost:
        _requeue_once(settings, run_dir, say)


def _requeue_once(settings: Settings, run_dir: RunDir, say: Callable[[str], None]) -> None:
    attempt = int(run_dir.read_run().get("attempt") or 1)
    if requeued_as(run_dir, attempt) is not None:
        return  # requeued once already, by this or another scheduler, or by the user
    try:
        new = requeue(settings, run_dir)
    except QueueError as e:
        if "already requeued" not in str(e):
            say(f"cannot requeue lost run {run_dir.name}: {e}")
        return
    say(f"requeued lost run {run_dir.name}" + ("" if new == run_dir.name else f" as {new}"))
