"""Recording how a run ended: the changes to its run.json (one entry per attempt), written
with retries on a full disk, else kept on local disk for the next xpkit process to write
(`store/pending.py`), and said plainly."""

from __future__ import annotations

import os
import sys
import time

from xpkit.errors import StoreError
from xpkit.settings import XP_GONE_WAIT
from xpkit.store.rundir import RunDir

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

END_WRITE_RETRY = 10.0  # seconds the end of a run is retried on a full disk


def end_changes(
    info: dict[str, Any], status: str, exit_code: int, started: float, ended: float,
    why: str | None, peak_rss: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """run.json's changes at the end of an attempt, that attempt's entry appended."""
    attempt = {
        "attempt": int(info.get("attempt") or 1), "host": os.uname().nodename,
        "gpus": info.get("gpus") or [], "worker": info.get("worker"), "started": started,
        "ended": ended, "exit_code": exit_code, "status": status, "reason": why,
    }  # fmt: skip
    changes: dict[str, Any] = dict(
        status=status, ended=ended, duration=round(ended - started, 3), exit_code=exit_code,
        reason=why, attempts=[*(info.get("attempts") or []), attempt],
    )  # fmt: skip
    if peak_rss is not None:
        changes["peak_rss_bytes"] = peak_rss
    return changes


def stopped_by(intent: dict[str, Any]) -> tuple[str, str]:
    """The status and reason of a run stopped by a `.cancel` intent: `pruned` when a
    sweep's pruner asked (with its reason), else `cancelled` and by whom."""
    if intent.get("prune"):
        return "pruned", str(intent.get("reason") or "pruned by the sweep's pruner")
    who = " ".join(str(intent[k]) for k in ("user", "by") if intent.get(k))
    return "cancelled", f"cancelled (xp cancel{' by ' + who if who else ''})"


def record_end(run_dir: RunDir, changes: dict[str, Any]) -> None:
    """Write `changes`; on a full disk retry a while, then keep them locally."""
    deadline = time.monotonic() + min(END_WRITE_RETRY, XP_GONE_WAIT.get())
    while True:
        try:
            run_dir.update_run(**changes)
            return
        except (OSError, StoreError) as e:
            if time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            problem = getattr(e, "strerror", None) or str(e)
        break
    keep_end(run_dir, changes, problem)


def keep_end(run_dir: RunDir, changes: dict[str, Any], problem: str) -> None:
    from xpkit.store import pending

    ended = f"{changes['status']}, exit code {changes['exit_code']}"
    try:
        where = f"kept in {pending.keep(run_dir, changes)}"
    except OSError as e:
        where = f"and it cannot be kept on local disk either ({e.strerror})"
    print(
        f"xp: error: cannot record how {run_dir.name} ended ({ended}): {problem}; "
        f"{where}: the next `xp ls` or worker writes it once {run_dir.path.parent} "
        "can take it",
        file=sys.stderr,
    )
