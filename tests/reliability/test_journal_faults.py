"""kill -9 of processes that change runs while listings read the change journal."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reliability.conftest import iterations
from xpkit.store import journal
from xpkit.store import rundir as rd
from xpkit.store.index import UNSETTLED_SECONDS, RunIndex

pytestmark = pytest.mark.integration

RUNS = 40
# Changes runs as xp does (status, tags, summary), as fast as it can, until killed.
WRITER = textwrap.dedent(
    """\
    import random, sys
    from pathlib import Path
    from xpkit.store import rundir as rd
    root, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    i = 0
    while True:
        run = rd.RunDir(root / rng.choice(names))
        i += 1
        what = rng.random()
        if what < 0.4:
            run.update_run(status=rng.choice(["finished", "failed", "killed"]), tags=[str(i)])
        elif what < 0.8:
            run.write_json(rd.SUMMARY_JSON, {"acc": i})
        else:
            run.update_run(tags=[f"t{i}"], priority=i % 7)
    """
)


def _rows(index: RunIndex) -> dict[str, tuple[object, ...]]:
    return {r.name: (r.status, r.tags_json, r.summary_json, r.params_json) for r in index.rows()}


def test_kill9_of_writers_never_hides_a_change_from_warm_listings(tmp_path: Path) -> None:
    """Fault: kill -9 of processes changing run metadata (status, tags, summary) as fast as
    they can, at seeded random moments, while a listing refreshes its index from the
    journal every few milliseconds (6 kills, soak: 100).
    Promise: once the kill is UNSETTLED_SECONDS old, the warm index (journal only) lists
    exactly what a full scan of every run folder lists."""
    root = tmp_path / "runs"
    root.mkdir()
    for trial in range(1, RUNS + 1):
        rd.RunDir.create(root / f"abc123_{trial:03d}_x",
                         {"name": f"abc123_{trial:03d}_x", "experiment_id": "abc123",
                          "trial": trial, "status": "running", "params": {"i": trial},
                          "created": time.time()})  # fmt: skip
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    warm = RunIndex(root, tmp_path / "warm.sqlite")
    warm.refresh()
    rng = random.Random(2207)
    for kill in range(iterations(6, 100)):
        writer = subprocess.Popen([sys.executable, str(script), str(root), str(kill)])
        deadline = time.monotonic() + rng.uniform(0.3, 1.2)
        while time.monotonic() < deadline:  # a listing reading while the writer writes
            warm.refresh()
            time.sleep(rng.uniform(0, 0.01))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        warm.refresh()
        time.sleep(UNSETTLED_SECONDS + 0.1)
        warm.refresh()
        full = RunIndex(root, tmp_path / f"full{kill}.sqlite")
        full.refresh(rescan=True)
        assert _rows(warm) == _rows(full), f"kill {kill}"
        assert warm._meta("journal")["files"], "the warm index read a journal"
        full.close()
    lines = sum(p.stat().st_size for p in journal.journal_dir(root).iterdir())
    assert lines > 0
    warm.close()
