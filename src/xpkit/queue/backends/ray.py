"""The Ray backend (`xp worker --ray HEAD:PORT`): runs execute as Ray tasks.

The scheduler (a Ray driver on the head, which holds the runs root) starts each run
as a task with `max_retries=0` (a retry must not silently restart training; the
scheduler's requeue policy decides). The task, on whichever node Ray picks: gets the
snapshot as a git bundle through the object store (once per snapshot), materializes
it in a node-local worktree, executes the run the one way every run executes
(`execute/prepared.py`) in a node-local copy of the run directory, and a sync thread
streams the appended bytes of output.log and metrics.jsonl, whole small files and a
resumable run's checkpoints back to a RunStore actor pinned to the head, which writes
them into the real run directory and beats its heartbeat. Nodes never read the runs
root.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from xpkit.errors import QueueError
from xpkit.execute.prepared import (
    bundle_path,
    execute_prepared,
    kept_out,
    repo_with_snapshot,
    snapshot_tree,
)
from xpkit.execute.runner import CHECKPOINTS
from xpkit.queue.files import QueuedRun
from xpkit.queue.ray_cluster import RESOURCE_LABEL, load_token, ray_env
from xpkit.queue.scheduler import LATER, NEVER, NOW, Backend, Ended
from xpkit.settings import Settings
from xpkit.store import journal
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir
from xpkit.values import path_digest

SYNC_EVERY = 1.0
STORE_NAME = "xpkit-run-store-2"  # -2: methods take the holder (a new interface)
WHOLE_FILES = (rd.RUN_JSON, rd.SUMMARY_JSON, rd.CONFIG_JSON, rd.ENV_JSON)
STREAMED = (rd.OUTPUT_LOG, rd.METRICS)
SENT = (rd.RUN_JSON, rd.CONFIG_JSON, rd.GIT_JSON, rd.GIT_DIFF, rd.SECRETS)  # to the node


class RunStore:
    """Lives on the head (a detached, named actor): the only writer of run directories
    for runs executing on the cluster, on behalf of the scheduler that holds each run.
    A task whose scheduler died (or lost the run to another one) is told to stop and
    its writes are dropped: the run's new holder is its only writer."""

    def __init__(self, runs_root: str) -> None:
        self.runs_root = Path(runs_root)
        self.stopping: set[str] = set()

    def _held_by(self, name: str, owner: int) -> bool:
        from xpkit.store.claims import holder_alive, read_claim

        run_dir = RunDir(self.runs_root / name)
        claim = read_claim(run_dir)
        return (
            claim is not None
            and int(claim.get("pid") or 0) == owner
            and holder_alive(self.runs_root, run_dir, claim)
        )

    def append(self, name: str, owner: int, filename: str, data: bytes) -> None:
        if not self._held_by(name, owner):
            return
        with open(self.runs_root / name / filename, "ab") as f:
            f.write(data)

    def write(self, name: str, owner: int, filename: str, data: bytes) -> None:
        if not self._held_by(name, owner):
            return
        target = self.runs_root / name / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        journal.note(self.runs_root / name)
        os.replace(partial, target)
        journal.note(self.runs_root / name)

    def stop(self, name: str) -> None:
        self.stopping.add(name)

    def beat(self, name: str, owner: int) -> bool:
        """Refresh the heartbeat; True when the run must stop (asked to, or its
        scheduler is gone)."""
        if not self._held_by(name, owner):
            return True
        RunDir(self.runs_root / name).beat()
        if name in self.stopping or (self.runs_root / name / rd.CANCEL).exists():
            self.stopping.discard(name)
            return True
        return False


class _Sync(threading.Thread):
    """Node side: ship what changed in the node-local run directory to the head."""

    def __init__(self, store: Any, local: RunDir, owner: int) -> None:
        super().__init__(daemon=True)
        self.store, self.local, self.owner = store, local, owner
        self.offsets = {name: 0 for name in STREAMED}
        self.offsets.update(_sizes(local))
        self.mtimes: dict[str, int] = {}
        self.stop_event = threading.Event()
        self.runner: Any = None
        self.stop_asked = False

    def run(self) -> None:
        while not self.stop_event.wait(SYNC_EVERY):
            self.sync()

    def _changed(self, relative: str) -> bytes | None:
        path = self.local.path / relative
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        if self.mtimes.get(relative) == mtime:
            return None
        self.mtimes[relative] = mtime
        return path.read_bytes()

    def sync(self, final: bool = False) -> None:
        """Whole files (checkpoints among them) are read before the streamed ones and
        sent after them: a checkpoint that reaches the head never runs ahead of the
        metrics the program flushed before saving it."""
        import ray

        whole = []
        for relative in self._whole_files(final):
            changed = self._changed(relative)
            if changed is not None:
                whole.append((relative, changed))
        calls = []
        for name in STREAMED:
            try:
                with open(self.local.file(name), "rb") as f:
                    f.seek(self.offsets[name])
                    data = f.read()
            except OSError:
                continue
            if data:
                self.offsets[name] += len(data)
                calls.append(self.store.append.remote(self.local.name, self.owner, name, data))
        calls += [self.store.write.remote(self.local.name, self.owner, r, d) for r, d in whole]
        ray.get(calls)
        if not final and ray.get(self.store.beat.remote(self.local.name, self.owner)):
            self.stop_asked = True
            if self.runner is not None:
                self.runner.stop()

    def _whole_files(self, final: bool) -> list[str]:
        relatives = list(WHOLE_FILES)
        for folder in [CHECKPOINTS] + ([rd.ARTIFACTS] if final else []):
            root = self.local.file(folder)
            if root.is_dir():
                relatives += [
                    p.relative_to(self.local.path).as_posix()
                    for p in sorted(root.rglob("*"))
                    if p.is_file()
                ]
        return relatives


def _sizes(local: RunDir) -> dict[str, int]:
    """Streamed files arrive with what the head already has: ship only what is new."""
    sizes = {}
    for name in STREAMED:
        try:
            sizes[name] = local.file(name).stat().st_size
        except OSError:
            sizes[name] = 0
    return sizes


def execute_remote(
    name: str, files: dict[str, bytes], bundle: Any, sha: str | None, store: Any, owner: int
) -> dict[str, Any]:
    """The body of the Ray task, on the node Ray chose."""
    import ray

    from xpkit.execute.workspace import Workspace
    from xpkit.settings import XP_CACHE_DIR

    gpus = [int(g) for g in ray.get_gpu_ids()]
    scratch = Path(tempfile.mkdtemp(prefix=f"xp-{name}-"))
    local = RunDir(scratch / name)
    local.path.mkdir()
    (local.path / rd.ARTIFACTS).mkdir()
    for relative, data in files.items():
        local.file(relative).parent.mkdir(parents=True, exist_ok=True)
        local.file(relative).write_bytes(data)
    for streamed in STREAMED:
        local.file(streamed).touch()
    node_ip = ray.util.get_node_ip_address()
    local.update_run(host=socket.gethostname(), node=node_ip, gpus=gpus)
    sync = _Sync(store, local, owner)
    sync.sync()  # the head knows the run's node before its program begins
    sync.start()

    def keep(runner: Any) -> None:
        sync.runner = runner
        if sync.stop_asked:
            runner.stop()

    def tree() -> Any:
        if not sha:
            return nullcontext(scratch)
        bundle_file = scratch / f"{sha}.bundle"
        bundle_file.write_bytes(bundle)
        # One repository per node: worktrees of one repository are managed under one
        # lock (`git worktree prune` of one would drop another's half-made worktree).
        repos = XP_CACHE_DIR.get() / "repos"
        repo = repo_with_snapshot(repos / f"ray-{node_ip}.git", bundle_file, sha)
        workspace = Workspace(repo, XP_CACHE_DIR.get() / "worktrees" / f"ray-{node_ip}",
                              (), *kept_out(local, local.read_run()))  # fmt: skip
        return snapshot_tree(workspace, sha, f"ray-{name}-{os.getpid()}")

    try:
        outcome = execute_prepared(local, tree, gpus=gpus, on_runner=keep)
    finally:
        sync.stop_event.set()
        sync.join()
        sync.sync(final=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return {"status": outcome.status, "exit_code": outcome.exit_code, "node": node_ip}


class RayBackend(Backend):
    kind = "ray"
    matches_labels = False

    def __init__(self, settings: Settings, address: str, *, node_ip: str | None = None) -> None:
        from xpkit.queue.ray_cluster import check_node_ip

        if node_ip:
            check_node_ip(node_ip)
        # Ray reads its authentication settings when it is imported: set them first.
        os.environ.update({k: v for k, v in ray_env(load_token()).items() if k.startswith("RAY_")})
        import ray

        self.settings = settings
        self.runs_root = settings.runs
        try:
            ray.init(
                address=address, _node_ip_address=node_ip, log_to_driver=False, namespace="xpkit"
            )
        except Exception as e:
            raise QueueError(f"cannot connect to the Ray cluster at {address}: {e}") from e
        head = node_ip or ray.util.get_node_ip_address()
        actor = ray.remote(RunStore).options(
            # One store per runs root: dispatchers of other projects share the cluster.
            name=f"{STORE_NAME}-{path_digest(self.runs_root, 12)}",
            lifetime="detached",
            get_if_exists=True,
            resources={f"node:{head}": 0.001},
            num_cpus=0,
        )
        self.store: Any = actor.remote(str(self.runs_root))
        self.task = ray.remote(execute_remote)
        self.running: dict[str, Any] = {}  # run name -> ObjectRef
        self.bundles: dict[str, Any] = {}
        self.total: dict[str, float] = {}
        self.free: dict[str, float] = {}
        self.free_at = 0.0
        self.holding: dict[str, dict[str, float]] = {}  # run -> what its task holds
        self.placed: dict[str, tuple[list[int], str | None]] = {}  # run -> (GPUs, node)
        self.last_place = 0.0

    def _resources(self) -> tuple[dict[str, float], dict[str, float]]:
        """The cluster's resources, and what is free: Ray's own view lags behind the
        tasks just submitted, so what this scheduler's tasks hold is subtracted from
        the total too (Ray's view still counts other drivers' tasks)."""
        import ray

        if time.monotonic() - self.free_at > 0.5:
            self.total = {k: float(v) for k, v in ray.cluster_resources().items()}
            self.free = {k: float(v) for k, v in ray.available_resources().items()}
            self.free_at = time.monotonic()
        free = dict(self.free)
        for key, total in self.total.items():
            mine = sum(needs.get(key, 0.0) for needs in self.holding.values())
            free[key] = min(free.get(key, 0.0), total - mine)
        return self.total, free

    @staticmethod
    def _needs(item: QueuedRun) -> dict[str, float]:
        needs = {f"{RESOURCE_LABEL}{label}": 1.0 for label in item.labels}
        needs.update({"GPU": float(item.gpus), "CPU": 1.0})
        return needs

    def fits(self, item: QueuedRun) -> str:
        total, free = self._resources()
        needs = self._needs(item)
        if any(total.get(k, 0.0) < v for k, v in needs.items()):
            return NEVER if not item.labels else LATER  # a node with the label may join
        if any(free.get(k, 0.0) < v for k, v in needs.items() if v):
            return LATER
        return NOW

    def start(self, run_dir: RunDir, item: QueuedRun) -> bool:
        import ray

        info = run_dir.read_run()
        sha = info.get("snapshot")
        if sha and sha not in self.bundles:
            self.bundles[sha] = ray.put(bundle_path(self.runs_root, sha).read_bytes())
        sent = {n: run_dir.file(n).read_bytes() for n in SENT if run_dir.file(n).exists()}
        checkpoints = run_dir.file(CHECKPOINTS)
        if checkpoints.is_dir():  # a resumable run's next attempt resumes from them
            sent.update(
                {
                    p.relative_to(run_dir.path).as_posix(): p.read_bytes()
                    for p in checkpoints.rglob("*")
                    if p.is_file()
                }
            )
        for streamed in STREAMED:  # the node appends after what the head already has
            sent[streamed] = run_dir.file(streamed).read_bytes()
        resources = {f"{RESOURCE_LABEL}{label}": 1.0 for label in item.labels}
        ref = self.task.options(
            num_gpus=item.gpus, num_cpus=1, max_retries=0, resources=resources or None
        ).remote(item.name, sent, self.bundles.get(sha or ""), sha, self.store, os.getpid())
        self.running[item.name] = ref
        self.holding[item.name] = self._needs(item)
        print(f"xp worker --ray: started {item.name} ({item.gpus} GPU)", flush=True)
        return True

    def poll(self, timeout: float) -> list[Ended]:
        import ray

        if time.monotonic() - self.last_place > 2.0:
            self._place()
        if not self.running:
            return []
        done, _ = ray.wait(
            list(self.running.values()), num_returns=len(self.running), timeout=timeout
        )
        ended = []
        for ref in done:
            name = next(n for n, r in self.running.items() if r == ref)
            del self.running[name]
            self.holding.pop(name, None)
            self.placed.pop(name, None)
            self.free_at = 0.0
            try:
                result = ray.get(ref)
            except Exception as e:  # the node or its worker process died
                ended.append(Ended(name, "lost", lost=f"Ray task died: {type(e).__name__}"))
                continue
            ended.append(Ended(name, result["status"], result.get("exit_code")))
        return ended

    def wait(self, timeout: float) -> None:
        import ray

        deadline = time.monotonic() + timeout
        while self.running and not self.wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # in slices, so that a queued run or a signal is seen within 0.1 s
            done, _ = ray.wait(list(self.running.values()), num_returns=1, timeout=min(left, 0.1))
            if done:
                return
        super().wait(max(0.0, deadline - time.monotonic()))

    def stop(self, name: str) -> None:
        if name in self.running:
            self.store.stop.remote(name)

    def withdraw(self, name: str) -> bool:
        """A task still waiting for a node (its run reported nothing yet) is cancelled;
        if it began meanwhile, it is left to end as usual."""
        import ray

        ref = self.running.get(name)
        if ref is None or (RunDir(self.runs_root / name).read_optional(rd.RUN_JSON, {}) or {}).get(
            "node"
        ):
            return False
        ready, _ = ray.wait([ref], timeout=0)
        if ready:
            return False
        ray.cancel(ref, force=True)
        try:
            ray.get(ref, timeout=30)
        except Exception:  # cancelled (or its node died): it did not run to an end
            pass
        info = RunDir(self.runs_root / name).read_optional(rd.RUN_JSON, {}) or {}
        if info.get("node"):
            return False  # it had begun after all: poll reports how it ended
        del self.running[name]
        self.holding.pop(name, None)
        return True

    def _place(self) -> None:
        """Where each running run is, from what its task wrote back (node, GPUs)."""
        self.last_place = time.monotonic()
        for name in self.running:
            info = RunDir(self.runs_root / name).read_optional(rd.RUN_JSON, {}) or {}
            self.placed[name] = (list(info.get("gpus") or []), info.get("node"))

    def close(self) -> None:
        """Disconnect from the cluster, but never hang on it (a dead node can keep
        `ray.shutdown` waiting): the caller exits right after."""
        import ray

        done = threading.Thread(target=ray.shutdown, daemon=True)
        done.start()
        done.join(timeout=10)

    def describe(self) -> dict[str, Any]:
        """What `xp status` shows: every node, its GPUs, the runs on it."""
        import ray

        nodes = []
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            ip = node.get("NodeManagerAddress")
            runs = {n: g for n, (g, where) in self.placed.items() if where == ip}
            nodes.append(
                {"ip": ip, "gpus": int(node.get("Resources", {}).get("GPU", 0)), "running": runs}
            )
        return {
            "ray": True,
            "nodes": nodes,
            "gpus": sum(n["gpus"] for n in nodes),
            "max_jobs": len(nodes),
            "running": {n: g for n, (g, _) in self.placed.items()},
        }
