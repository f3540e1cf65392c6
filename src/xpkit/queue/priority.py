"""Changing the priority of a queued run (`xp top`'s `p`), by the queue's rules: its
run.json has one writer, whoever holds its claim. The changer takes the claim (so no
worker starts it meanwhile), writes the priority, and gives the run back to the queue
with a marker that says it; killed in between, it leaves a dead claim that the next
recovery pass gives back."""

from __future__ import annotations

from pathlib import Path

from xpkit.errors import QueueError
from xpkit.queue import files
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

LIMIT = 1_000_000


def set_priority(runs_root: Path, run_dir: RunDir, priority: int) -> None:
    if abs(priority) > LIMIT:
        raise QueueError(f"priority {priority} is out of range (-{LIMIT:,} to {LIMIT:,})")
    status = rd.status_of(run_dir, run_dir.read_run())
    if status != "queued":
        raise QueueError(f"{run_dir.name} is {status}; only a queued run's priority can change")
    if not files.claim(runs_root, run_dir.name, files.me("priority")):
        raise QueueError(f"{run_dir.name} was just taken by a worker (or is being changed by "
                         "another process); its priority stays")  # fmt: skip
    info = run_dir.read_run()
    if info.get("status") != "queued":  # ended meanwhile (a cancel): nothing to queue
        run_dir.file(rd.CLAIM).unlink(missing_ok=True)
        raise QueueError(f"{run_dir.name} is {info.get('status')}; its priority stays")
    files.release(runs_root, run_dir, run_dir.update_run(priority=priority))
