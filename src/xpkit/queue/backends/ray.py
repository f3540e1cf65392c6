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
from pathlib import Path
from typing import Any

from xpkit.errors import QueueError
from xpkit.execute.prepared import (
    _plain,
    bundle_path,
    execute_prepared,
    repo_with_snapshot,
    snapshot_tree,
)
from xpkit.execute.runner import CHECKPOINTS
from xpkit.queue.files import QueuedRun
from xpkit.queue.ray_cluster import RESOURCE_LABEL, load_token, ray_env
from xpkit.queue.scheduler import LATER, NEVER, NOW, Backend, Ended
from xpkit.settings import Settings
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

SYNC_EVERY = 1.0
STORE_NAME = "xpkit-run-store"
WHOLE_FILES = (rd.RUN_JSON, rd.SUMMARY_JSON, rd.CONFIG_JSON, rd.ENV_JSON)
STREAMED = (rd.OUTPUT_LOG, rd.METRICS)
SENT = (rd.RUN_JSON, rd.CONFIG_JSON, rd.GIT_JSON, rd.GIT_DIFF)


class RunStore:
    """Lives on the head (a detached, named actor): the only writer of run directories
    for runs executing on the cluster."""

    def __init__(self, runs_root: str) -> None:
        self.runs_root = Path(runs_root)
        self.stopping: set[str] = set()

    def append(self, name: str, filename: str, data: bytes) -> None:
        with open(self.runs_root / name / filename, "ab") as f:
            f.write(data)

    def write(self, name: str, filename: str, data: bytes) -> None:
        target = self.runs_root / name / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, target)

    def stop(self, name: str) -> None:
        self.stopping.add(name)

    def beat(self, name: str) -> bool:
        """Refresh the heartbeat; True when the run was asked to stop."""
        RunDir(self.runs_root / name).beat()
        if name in self.stopping or (self.runs_root / name / rd.CANCEL).exists():
            self.stopping.discard(name)
            return True
        return False


class _Sync(threading.Thread):
    """Node side: ship what changed in the node-local run directory to the head."""

    def __init__(self, store: Any, local: RunDir) -> None:
        super().__init__(daemon=True)
        self.store, self.local = store, local
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
                calls.append(self.store.append.remote(self.local.name, name, data))
        calls += [self.store.write.remote(self.local.name, r, d) for r, d in whole]
        ray.get(calls)
        if not final and ray.get(self.store.beat.remote(self.local.name)):
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
    name: str, files: dict[str, bytes], bundle: Any, sha: str | None, store: Any
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
    sync = _Sync(store, local)
    sync.start()

    def keep(runner: Any) -> None:
        sync.runner = runner
        if sync.stop_asked:
            runner.stop()

    def tree() -> Any:
        if not sha:
            return _plain(scratch)
        bundle_file = scratch / f"{sha}.bundle"
        bundle_file.write_bytes(bundle)
        # One repository per node: worktrees of one repository are managed under one
        # lock (`git worktree prune` of one would drop another's half-made worktree).
        repos = XP_CACHE_DIR.get() / "repos"
        repo = repo_with_snapshot(repos / f"ray-{node_ip}.git", bundle_file, sha)
        workspace = Workspace(repo, XP_CACHE_DIR.get() / "worktrees" / f"ray-{node_ip}")
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
            name=STORE_NAME,
            lifetime="detached",
            get_if_exists=True,
            resources={f"node:{head}": 0.001},
            num_cpus=0,
        )
        self.store: Any = actor.remote(str(self.runs_root))
        self.task = ray.remote(execute_remote)
        self.running: dict[str, Any] = {}  # run name -> ObjectRef
        self.bundles: dict[str, Any] = {}
        self.free: dict[str, float] = {}
        self.free_at = 0.0
        self.placed: dict[str, tuple[list[int], str | None]] = {}  # run -> (GPUs, node)
        self.last_place = 0.0

    def _available(self, key: str) -> float:
        import ray

        if time.monotonic() - self.free_at > 0.5:
            self.free = {k: float(v) for k, v in ray.available_resources().items()}
            self.free_at = time.monotonic()
        return self.free.get(key, 0.0)

    def fits(self, item: QueuedRun) -> str:
        import ray

        total = ray.cluster_resources()
        needs = {f"{RESOURCE_LABEL}{label}": 1.0 for label in item.labels}
        needs.update({"GPU": float(item.gpus), "CPU": 1.0})
        if any(total.get(k, 0.0) < v for k, v in needs.items()):
            return NEVER if not item.labels else LATER  # a node with the label may join
        if any(self._available(k) < v for k, v in needs.items() if v):
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
        ).remote(item.name, sent, self.bundles.get(sha or ""), sha, self.store)
        self.running[item.name] = ref
        self.free_at = 0.0
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
            self.placed.pop(name, None)
            self.free_at = 0.0
            try:
                result = ray.get(ref)
            except Exception as e:  # the node or its worker process died
                ended.append(Ended(name, "lost", lost=f"Ray task died: {type(e).__name__}"))
                continue
            ended.append(Ended(name, result["status"], result.get("exit_code")))
        return ended

    def stop(self, name: str) -> None:
        if name in self.running:
            self.store.stop.remote(name)

    def _place(self) -> None:
        """Where each running run is, from what its task wrote back (node, GPUs)."""
        self.last_place = time.monotonic()
        for name in self.running:
            info = RunDir(self.runs_root / name).read_optional(rd.RUN_JSON, {}) or {}
            self.placed[name] = (list(info.get("gpus") or []), info.get("node"))

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
