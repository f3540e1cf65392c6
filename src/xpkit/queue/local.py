"""The local queue: submit runs into the runs root for `xp worker`s to take, or (the
DebugExecutor) run them here and now. Also `xp requeue`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xpkit.capture.git import create_bundle, fetch_bundle, git, snapshot_exists
from xpkit.errors import QueueError
from xpkit.execute.launch import plan_rerun
from xpkit.hooks import events
from xpkit.names import META_DIR
from xpkit.queue.base import Executor, Job
from xpkit.queue.store import enqueue
from xpkit.settings import Settings
from xpkit.store import rundir as rd
from xpkit.store.create import NewRun, Provenance, create_run, ensure_runs_root
from xpkit.store.locks import exclusive_lock
from xpkit.store.rundir import RunDir


def bundle_path(runs_root: Path, sha: str) -> Path:
    return runs_root / META_DIR / "bundles" / f"{sha}.bundle"


def repo_with_snapshot(repo: Path, bundle: Path, sha: str) -> Path:
    """`repo` (created bare if missing) holding snapshot `sha`, fetched from its bundle
    if needed. Serialized: a sweep's runs start at once and share the repository."""
    repo.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(repo.with_name(repo.name + ".lock")):
        if not repo.exists():
            repo.mkdir()
            git(repo, "init", "-q", "--bare")
        if not snapshot_exists(repo, sha):
            fetch_bundle(repo, bundle, sha)
    return repo


@dataclass
class QueueRequest:
    priority: int = 0
    gpus: int | None = None  # None: the experiment's own
    labels: tuple[str, ...] = ()


class LocalExecutor(Executor):
    """Queued in the runs root; executed by `xp worker`."""

    name = "local"

    def __init__(self, runs_root: Path) -> None:
        self.runs_root = runs_root

    def _submit(self, jobs: list[Job]) -> list[Job]:
        for job in jobs:
            enqueue(self.runs_root, job.run_dir, priority=job.priority, gpus=job.gpus,
                    labels=list(job.labels))  # fmt: skip
        return jobs


class DebugExecutor(Executor):
    """Runs each job right away in this process, one after another, on no GPU: the
    queue's contract without a worker, for tests and debugging."""

    name = "debug"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _submit(self, jobs: list[Job]) -> list[Job]:
        from xpkit.queue.worker import execute_job

        for job in jobs:
            job.run_dir.file(rd.CLAIM).write_text("debug executor\n")
            execute_job(self.settings, job.run_dir, gpus=[], worker="debug")
        return jobs


def submit(
    settings: Settings, planned: list[NewRun], provenance: Provenance,
    request: QueueRequest, executor: Executor | None = None,
) -> list[RunDir]:  # fmt: skip
    """Create the runs as `queued` and hand them to the executor (default: the queue).
    The snapshot is also stored as a bundle, for workers on other machines."""
    ensure_runs_root(settings.runs)
    if request.gpus is not None and request.gpus < 0:
        raise QueueError(f"--gpus must be 0 or more, got {request.gpus}")
    if provenance.snapshot is not None:
        sha = provenance.snapshot.snapshot
        create_bundle(provenance.project, sha, bundle_path(settings.runs, sha))
    jobs = []
    for new in planned:
        if request.gpus is not None:
            new.gpus = request.gpus
        run_dir = create_run(settings.runs, new, provenance)
        run_dir.update_run(priority=request.priority, labels=list(request.labels))
        jobs.append(Job(run_dir, priority=request.priority, gpus=new.gpus,
                        labels=tuple(request.labels)))  # fmt: skip
    created = [job.run_dir for job in jobs]
    sweep = planned[0].sweep if planned else None
    if sweep and events.specs_of(settings):
        events.remember_runs(settings, sweep, [r.name for r in created], planned=len(created))
        events.sweep_submitted(settings, created)
    (executor or LocalExecutor(settings.runs)).map(jobs)
    return created


def requeue(settings: Settings, original: RunDir) -> RunDir:
    """A failed, killed or lost run back in the queue, as a new trial."""
    info = original.read_run()
    status = rd.status_of(original, info)
    if status not in ("failed", "killed", "lost", "cancelled"):
        raise QueueError(
            f"{original.name} is {status}; only failed, killed, cancelled or lost runs can be "
            "requeued (use `xp rerun` to repeat a finished one)"
        )
    planned, provenance = plan_rerun(settings, original, require_snapshot=False)
    request = QueueRequest(priority=int(info.get("priority") or 0),
                           gpus=int(info.get("gpus_requested") or 0),
                           labels=tuple(info.get("labels") or ()))  # fmt: skip
    (new,) = submit(settings, [planned], provenance, request)
    original.update_run(requeued_as=new.name)
    return new
