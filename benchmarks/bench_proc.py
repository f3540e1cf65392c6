"""Running a benchmarked command: its wall time and what it printed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def settle_disk(pause: float = 0.0) -> None:
    """Write back what earlier scenarios left in the page cache (a 100,000-run listing is
    gigabytes) before timing, so that its writeback is not timed as this scenario's
    fsyncs and file creations: on this host that doubled a run's cost for minutes.
    `pause` then gives the disk time for what follows a sync and no call waits for: this
    host's ext4 is mounted with online discard, and for up to a minute after a scenario
    deleted a gigabyte of small files, creating files cost 2-3x (1,000 runs in one
    process: 7.1 ms a run just after `bench_envs.py`, 4.1 ms after a sync, 2.5 ms later)."""
    os.sync()
    time.sleep(pause)


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Seconds the whole process took and its stdout; a failure stops the benchmark."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {cmd}\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout.strip()


def splice(document: str, section: list[str], heading: str) -> str:
    """BENCHMARKS.md with the section that starts with `heading` replaced by `section`
    (or added before the final command line), for scripts that write one section."""
    import re

    text = "\n".join(section)
    pattern = re.compile(rf"^{re.escape(heading)}.*?(?=^## |^Command: |\Z)", re.S | re.M)
    if pattern.search(document):
        return pattern.sub(lambda _: text, document, count=1)
    at = document.rfind("Command: `make bench`.")
    return document[:at] + text + document[at:] if at >= 0 else document + "\n" + text
