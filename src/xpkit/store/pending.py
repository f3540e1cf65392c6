"""How runs ended, when their run.json could not be written then (a full disk, a runs
root unmounted, renamed or gone): kept on this machine's local disk and written by the
next xpkit process that looks at the runs root (`xp ls`, the dashboard, a worker's
recovery pass), so a finished run never turns into a `lost` one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xpkit.settings import XP_CACHE_DIR
from xpkit.store.rundir import RunDir, write_json_atomic
from xpkit.values import path_digest


def _folder(runs_root: Path) -> Path:
    digest = path_digest(runs_root)
    return XP_CACHE_DIR.get() / "pending" / digest


def keep(run_dir: RunDir, changes: dict[str, Any]) -> Path:
    """Keep `changes` to the run's run.json for later; returns where (OSError if even
    the local disk cannot take them)."""
    folder = _folder(run_dir.path.parent)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_dir.name}.json"
    write_json_atomic(path, {"name": run_dir.name, "changes": changes})
    return path


def apply(runs_root: Path) -> list[str]:
    """Write the kept outcomes whose runs are reachable now; returns their names. An
    outcome is written only over the attempt it belongs to, still `running` or `lost`
    and not requeued: never over what happened to the run since."""
    folder = _folder(runs_root)
    try:
        files = sorted(folder.glob("*.json"))
    except OSError:
        return []
    done = []
    for path in files:
        try:
            record = json.loads(path.read_text())
            name, changes = str(record["name"]), dict(record["changes"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        run_dir = RunDir(runs_root / name)
        try:
            info = run_dir.read_run()
        except Exception:
            continue  # not reachable yet (or gone for good: `xp gc` is not this module's)
        attempts = changes.get("attempts") or [{}]
        if (
            info.get("status") in ("running", "lost")
            and not info.get("requeued_as")
            and int(info.get("attempt") or 1) == int(attempts[-1].get("attempt") or 1)
        ):
            try:
                run_dir.update_run(**changes)
            except OSError:
                continue  # still full: the next look tries again
        done.append(name)
        try:
            os.unlink(path)
        except OSError:
            pass
    return done
