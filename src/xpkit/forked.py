"""Mapping a function over many independent jobs in a process per core (parsing many
run files for a cold index or a cold report), when it is worth it and safe."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


def map_jobs(func: Callable[[Job], Result], jobs: Sequence[Job], many: bool) -> list[Result]:
    """`[func(job) for job in jobs]`, in forked worker processes when `many` (the caller's
    judgement that the work outweighs starting them) and this machine has cores to spare.
    A process with other threads (the dashboard's, `xp top`'s) maps in itself: a fork
    could copy a lock one of them holds. `func` must be a module-level function."""
    workers = min(os.cpu_count() or 1, 8)
    if not many or workers < 2 or threading.active_count() > 1:
        return [func(job) for job in jobs]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(func, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
