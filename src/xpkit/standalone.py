"""A run created by the training program itself (`python train.py` calling `xp.init()`
without `xp run`): the same snapshot, capture and run record as `xp run` makes, and a
`tracking.Run` that owns the run's status and heartbeat. Imported only then."""

from __future__ import annotations

import os
import shlex
import sys
import warnings

from xpkit import names, process_hooks
from xpkit.errors import GitError
from xpkit.settings import load_settings
from xpkit.store.create import NewRun, create_run, ensure_runs_root, reuse_provenance
from xpkit.tracking import Run, _warn

TYPE_CHECKING = False  # typing is not imported on a run's path
if TYPE_CHECKING:
    from typing import Any


def create_standalone_run(
    name: str | None, tags: list[str], no_git: bool, config: dict[str, Any]
) -> Run:
    settings = load_settings()
    argv = [os.path.basename(sys.executable), *sys.argv]
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    label = name or script.removesuffix(".py")
    try:
        with warnings.catch_warnings(record=True) as said:  # as `xp run` says them
            warnings.simplefilter("always")
            provenance = reuse_provenance(settings, no_git)
    except GitError as e:
        raise GitError(f"{e} From Python: xp.init(no_git=True).") from e
    for warning in said:
        _warn(f"xp: warning: {warning.message}")
    ensure_runs_root(settings.runs)
    new = NewRun(
        expid=names.command_experiment_id(argv),
        slug=names.slugify(label),
        command=shlex.join(argv),
        argv=argv,
        experiment={"name": label, "file": None},
        tags=tags,
        config=config,
        artifacts_folder=False,
    )
    # started and pid set: `running`, alive until the heartbeat timeout after `started`
    # even before the flusher's first beat
    run_dir = create_run(settings.runs, new, provenance, status="running")
    process_hooks.capture_streams(run_dir)
    return Run(run_dir, owned=True, config=config)
