"""`xp worker --ray HEAD:PORT`: the queue dispatched onto a Ray cluster.

The dispatcher (a Ray driver on the head, which holds the runs root) takes queued runs
in queue order and submits each, when the cluster has room, as a task with
`max_retries=0` (a retry must not silently restart training; xpkit's requeue policy
decides). The task, on whichever node Ray picks: gets the snapshot as a git bundle
through the object store (once per snapshot), materializes it in a node-local
worktree, runs the command under the same Runner as a local run in a node-local copy
of the run directory, and a sync thread streams the appended bytes of output.log and
metrics.jsonl and whole small files back to a RunStore actor pinned to the head,
which writes them into the real run directory and beats its heartbeat. Nodes never
read the runs root.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from xpkit.errors import XpError
from xpkit.hooks import events
from xpkit.queue.local import bundle_path, repo_with_snapshot, requeue
from xpkit.queue.ray_cluster import RESOURCE_LABEL, load_token, ray_env
from xpkit.queue.store import claim, queued_runs
from xpkit.queue.worker import workers_dir
from xpkit.settings import XP_WORKER_POLL, Settings
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir, write_json_atomic

SYNC_EVERY = 1.0
STORE_NAME = "xpkit-run-store"
WHOLE_FILES = (rd.RUN_JSON, rd.SUMMARY_JSON, rd.CONFIG_JSON, rd.ENV_JSON)
STREAMED = (rd.OUTPUT_LOG, rd.METRICS)


class RunStore:
    """Lives on the head (a detached, named actor): the only writer of run directories
    for runs executing on the cluster."""

    def __init__(self, runs_root: str) -> None:
        self.runs_root = Path(runs_root)

    def append(self, name: str, filename: str, data: bytes) -> None:
        with open(self.runs_root / name / filename, "ab") as f:
            f.write(data)

    def write(self, name: str, filename: str, data: bytes) -> None:
        target = self.runs_root / name / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, target)

    def beat(self, name: str) -> bool:
        """Refresh the heartbeat; True when the run was asked to stop (xp cancel)."""
        RunDir(self.runs_root / name).beat()
        return (self.runs_root / name / rd.CANCEL).exists()


class _Sync(threading.Thread):
    """Node side: ship what changed in the node-local run directory to the head."""

    def __init__(self, store: Any, local: RunDir) -> None:
        super().__init__(daemon=True)
        self.store, self.local = store, local
        self.offsets = {name: 0 for name in STREAMED}
        self.mtimes: dict[str, int] = {}
        self.stop_event = threading.Event()
        self.runner: Any = None

    def run(self) -> None:
        while not self.stop_event.wait(SYNC_EVERY):
            self.sync()

    def sync(self, final: bool = False) -> None:
        import ray

        calls = []
        for name in STREAMED:
            path = self.local.file(name)
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[name])
                    data = f.read()
            except OSError:
                continue
            if data:
                self.offsets[name] += len(data)
                calls.append(self.store.append.remote(self.local.name, name, data))
        for name in WHOLE_FILES:
            try:
                mtime = self.local.file(name).stat().st_mtime_ns
            except OSError:
                continue
            if self.mtimes.get(name) != mtime:
                self.mtimes[name] = mtime
                data = self.local.file(name).read_bytes()
                calls.append(self.store.write.remote(self.local.name, name, data))
        if final:
            artifacts = self.local.file(rd.ARTIFACTS)
            for path in sorted(artifacts.rglob("*")) if artifacts.is_dir() else []:
                if path.is_file():
                    relative = path.relative_to(self.local.path).as_posix()
                    calls.append(
                        self.store.write.remote(self.local.name, relative, path.read_bytes())
                    )
        ray.get(calls)
        if not final and ray.get(self.store.beat.remote(self.local.name)) and self.runner:
            self.runner.stop()


def execute_remote(
    name: str, files: dict[str, bytes], bundle: Any, sha: str | None, store: Any
) -> dict[str, Any]:
    """The body of the Ray task, on the node Ray chose."""
    import ray

    from xpkit.capture.env import capture_env
    from xpkit.execute.runner import Runner
    from xpkit.execute.workspace import Workspace
    from xpkit.settings import XP_CACHE_DIR

    gpus = [str(int(g)) for g in ray.get_gpu_ids()]
    visible = {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}
    scratch = Path(tempfile.mkdtemp(prefix=f"xp-{name}-"))
    local = RunDir(scratch / name)
    local.path.mkdir()
    (local.path / rd.ARTIFACTS).mkdir()
    for filename, data in files.items():
        local.file(filename).write_bytes(data)
    node_ip = ray.util.get_node_ip_address()
    local.update_run(host=socket.gethostname(), node=node_ip, gpus=[int(g) for g in gpus])
    env = capture_env()
    env.get("env", {}).get("variables", {}).update(visible)
    local.write_json(rd.ENV_JSON, env)
    sync = _Sync(store, local)
    sync.sync()
    sync.start()
    workspace = tree = None
    user = f"ray-{name}"
    try:
        cwd = scratch
        if sha:
            bundle_file = scratch / f"{sha}.bundle"
            bundle_file.write_bytes(bundle)
            repo = repo_with_snapshot(XP_CACHE_DIR.get() / "repos" / "ray.git", bundle_file, sha)
            workspace = Workspace(repo, XP_CACHE_DIR.get() / "worktrees" / f"ray-{node_ip}")
            tree = workspace.acquire(sha, user)
            cwd = tree / (local.read_run().get("cwd") or ".")
            cwd = cwd if cwd.is_dir() else tree
        runner = Runner(local, cwd, echo=False)
        sync.runner = runner
        outcome = runner.execute(extra_env=visible)
        status = outcome.status
    except XpError as e:
        if local.read_run().get("status") not in rd.ENDED:
            local.update_run(status="failed", ended=rd.now(), reason=str(e))
        status = "failed"
    finally:
        sync.stop_event.set()
        sync.join()
        sync.sync(final=True)
        if workspace is not None and tree is not None:
            workspace.release(tree, user)
    return {"status": status, "node": node_ip}


class RayDispatcher:
    def __init__(self, settings: Settings, address: str, *, node_ip: str | None = None,
                 once: bool = False, requeue_lost: bool = False) -> None:  # fmt: skip
        # Ray reads its authentication settings when it is imported: set them first.
        os.environ.update({k: v for k, v in ray_env(load_token()).items() if k.startswith("RAY_")})
        import ray

        self.settings = settings
        self.runs_root = settings.runs
        self.once, self.requeue_lost = once, requeue_lost
        ray.init(address=address, _node_ip_address=node_ip, log_to_driver=False,
                 namespace="xpkit")  # fmt: skip
        head = node_ip or ray.util.get_node_ip_address()
        actor = ray.remote(RunStore).options(
            name=STORE_NAME, lifetime="detached", get_if_exists=True,
            resources={f"node:{head}": 0.001}, num_cpus=0,
        )  # fmt: skip
        self.store = actor.remote(str(self.runs_root))
        self.task = ray.remote(execute_remote)
        self.running: dict[str, Any] = {}  # run name -> ObjectRef
        self.bundles: dict[str, Any] = {}
        self.markers: dict[str, dict[str, Any]] = {}
        self.id = f"ray:{socket.gethostname()}:{os.getpid()}"
        self.started = time.time()
        self.placed: dict[str, tuple[list[int], str | None]] = {}  # run -> (GPUs, node)
        self._reconcile()

    def _say(self, text: str) -> None:
        print(f"xp worker --ray: {text}", flush=True)

    def _reconcile(self) -> None:
        """Runs a previous dispatcher left `running` have no task any more: lost."""
        from xpkit.store.index import load_rows

        rows, _ = load_rows(self.runs_root, statuses=("running", "lost"))
        for row in rows:
            run_dir = RunDir(self.runs_root / row.name)
            info = run_dir.read_run()
            if str(info.get("worker", "")).startswith("ray:") and info.get("status") == "running":
                run_dir.update_run(status="lost", reason="its Ray dispatcher stopped")
                self._say(f"{row.name}: lost (dispatcher restarted)")
                if self.requeue_lost:
                    self._say(f"requeued {row.name} as {requeue(self.settings, run_dir).name}")

    def run(self) -> None:
        import ray

        try:
            self._loop(ray, XP_WORKER_POLL.get())
        finally:
            (workers_dir(self.runs_root) / self._file_name()).unlink(missing_ok=True)

    def _file_name(self) -> str:
        return f"ray_{socket.gethostname()}_{os.getpid()}.json"

    def _register(self) -> None:
        """What `xp status` shows: every node, its GPUs, the runs on it."""
        import ray

        nodes = []
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            ip = node.get("NodeManagerAddress")
            runs = {n: g for n, (g, where) in self.placed.items() if where == ip}
            nodes.append({"ip": ip, "gpus": int(node.get("Resources", {}).get("GPU", 0)),
                          "running": runs})  # fmt: skip
        record = {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                  "ray": True, "nodes": nodes, "started": self.started,
                  "gpus": sum(n["gpus"] for n in nodes), "max_jobs": len(nodes),
                  "labels": [], "running": {n: g for n, (g, _) in self.placed.items()}}  # fmt: skip
        folder = workers_dir(self.runs_root)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / self._file_name(), record)

    def _loop(self, ray: Any, poll: float) -> None:
        last_beat = 0.0
        while True:
            if time.monotonic() - last_beat > 2.0:
                self._place()
                self._register()
                last_beat = time.monotonic()
            waiting = self._submit_runnable()
            if self.running:
                done, _ = ray.wait(list(self.running.values()), num_returns=1, timeout=poll)
                for ref in done:
                    self._finish(ref)
            elif self.once and not waiting:
                break
            else:
                time.sleep(poll)

    def _free(self, key: str) -> float:
        import ray

        return float(ray.available_resources().get(key, 0.0))

    def _submit_runnable(self) -> int:
        queued, _ = queued_runs(self.runs_root, self.markers)
        for item in queued:
            resources = {f"{RESOURCE_LABEL}{label}": 1.0 for label in item.labels}
            if any(self._free(k) < 1 for k in resources):
                continue  # no node offers that label (now)
            if item.gpus > self._free("GPU") or self._free("CPU") < 1:
                break  # no room: the first in line waits, nothing overtakes it
            if not claim(self.runs_root, item.name, self.id):
                continue
            try:
                self._dispatch(item.name, item.gpus, resources)
            except Exception as e:  # one bad run never stops the dispatcher
                RunDir(self.runs_root / item.name).update_run(
                    status="failed", ended=rd.now(), reason=f"dispatch failed: {e}"
                )
        return len(queued)

    def _dispatch(self, name: str, gpus: int, resources: dict[str, float]) -> None:
        import ray

        run_dir = RunDir(self.runs_root / name)
        info = run_dir.update_run(worker=self.id)
        sha = info.get("snapshot")
        if sha and sha not in self.bundles:
            self.bundles[sha] = ray.put(bundle_path(self.runs_root, sha).read_bytes())
        files = {n: run_dir.file(n).read_bytes() for n in (rd.RUN_JSON, rd.CONFIG_JSON,
                 rd.GIT_JSON, rd.GIT_DIFF) if run_dir.file(n).exists()}  # fmt: skip
        ref = self.task.options(num_gpus=gpus, num_cpus=1, max_retries=0,
                                resources=resources or None).remote(
            name, files, self.bundles.get(sha or ""), sha, self.store
        )  # fmt: skip
        self.running[name] = ref
        self._say(f"submitted {name} ({gpus} GPU)")

    def _place(self) -> None:
        """Where each running run is, from what its task wrote back (node, GPUs)."""
        for name in self.running:
            info = RunDir(self.runs_root / name).read_optional(rd.RUN_JSON, {}) or {}
            self.placed[name] = (list(info.get("gpus") or []), info.get("node"))

    def _finish(self, ref: Any) -> None:
        import ray

        name = next(n for n, r in self.running.items() if r == ref)
        del self.running[name]
        self.placed.pop(name, None)
        run_dir = RunDir(self.runs_root / name)
        try:
            result = ray.get(ref)
            self._say(f"{result['status']} {name} on {result['node']}")
        except Exception as e:  # the node or its worker process died
            run_dir.update_run(status="lost", reason=f"Ray task died: {type(e).__name__}")
            self._say(f"lost {name}: {type(e).__name__}")
            events.run_ended(self.settings, run_dir)
            if self.requeue_lost:
                self._say(f"requeued {name} as {requeue(self.settings, run_dir).name}")
            return
        events.run_ended(self.settings, run_dir)
