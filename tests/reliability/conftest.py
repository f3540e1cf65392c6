"""Fault-injection suite: each test's docstring states the fault and the promise
(`Fault:` and `Promise:` lines); a full run of the suite rewrites RELIABILITY.md with
the result of each (tests/reliability_record.py, loaded by tests/conftest.py so that
xdist's controller has it too). XP_SOAK=1 (`make soak`) repeats the randomized faults
longer."""

from __future__ import annotations

import os

SOAK = os.environ.get("XP_SOAK") == "1"


def iterations(quick: int, soak: int) -> int:
    return soak if SOAK else quick
