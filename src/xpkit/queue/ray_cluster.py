"""`xp cluster head|join|stop`: Ray nodes with safe defaults, stopped by PID.

`ray stop` kills every Ray process of the host, a colleague's too; xpkit records the
processes each `ray start` it ran created (the new Ray processes and, at stop time,
their descendants) and stops exactly those. Usage stats are off, token authentication
is on, the dashboard (if any) listens on 127.0.0.1, the object store is capped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpkit.errors import QueueError
from xpkit.settings import XP_CACHE_DIR, XP_RAY_TOKEN

OBJECT_STORE_BYTES = 2 * 2**30
RESOURCE_NODE = "xp_node:"  # xp_node:<ip>: 1 on every node xpkit starts
RESOURCE_LABEL = "xp_label:"  # xp_label:<label>: 1000 on nodes offering that label


def state_dir() -> Path:
    return XP_CACHE_DIR.get() / "ray"


def token_path() -> Path:
    return state_dir() / "auth_token"


def ray_env(token: str) -> dict[str, str]:
    """Environment for every Ray process and driver xpkit starts."""
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        # A queue's tasks may wait for a busy node to start a worker process.
        "RAY_worker_register_timeout_seconds": "600",
    }


def load_token() -> str:
    """The cluster token: XP_RAY_TOKEN, else the one `xp cluster head` saved here."""
    token = XP_RAY_TOKEN.get()
    if token:
        return token
    try:
        return token_path().read_text().strip()
    except OSError:
        raise QueueError(
            "no Ray cluster token: run `xp cluster head` on this machine, or set "
            "XP_RAY_TOKEN to the token `xp cluster head` printed"
        ) from None


@dataclass
class NodeStart:
    address: str
    node_ip: str
    pids: list[int]
    token: str


def _ray_executable() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if not found:
        raise QueueError("Ray is not installed: pip install 'xpkit[ray]'")
    return found


def _ray_pids() -> set[int]:
    import psutil

    found = set()
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = f"{proc.info['name']} {' '.join(proc.info['cmdline'] or [])}"
        except (psutil.Error, TypeError):
            continue
        if "ray" in text and proc.info["pid"] != os.getpid():
            found.add(proc.info["pid"])
    return found


RAY_START_TIMEOUT = 180.0


def check_node_ip(node_ip: str) -> None:
    """Ray replaces 127.0.0.1 (and localhost) by the machine's network address, so a
    "loopback" cluster would talk over the network. Other 127.x addresses stay."""
    if node_ip.strip().lower() in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        raise QueueError(
            f"--node-ip {node_ip}: Ray silently replaces this address by the machine's "
            "network address, so the cluster would not stay on loopback. For a cluster on "
            "one machine pass another loopback address, e.g. --node-ip 127.0.0.2 (and "
            "127.0.0.3 for a second node); across machines pass this machine's address on "
            "the network the nodes share."
        )


def _start(args: list[str], token: str, node_ip: str, address: str, gpus: int | None) -> NodeStart:
    check_node_ip(node_ip)
    before = _ray_pids()
    try:
        proc = subprocess.run(
            [_ray_executable(), "start", *args],
            env=ray_env(token),
            capture_output=True,
            text=True,
            timeout=RAY_START_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise QueueError(
            f"`ray start` did not finish within {RAY_START_TIMEOUT:.0f} s (node {node_ip}); "
            "check that the head's address and port are reachable from here"
        ) from None
    if proc.returncode != 0:
        raise QueueError(f"`ray start` failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    time.sleep(0.5)  # let the agents spawn, so they are recorded too
    started = sorted(_ray_pids() - before)
    node = NodeStart(address, node_ip, started, token)
    folder = state_dir() / "nodes"
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "address": address,
        "node_ip": node_ip,
        "pids": started,
        "started": time.time(),
        "gpus": gpus,
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    (folder / f"{node_ip.replace(':', '_')}-{os.getpid()}.json").write_text(json.dumps(record))
    return node


def _resources(node_ip: str, labels: tuple[str, ...]) -> str:
    resources = {f"{RESOURCE_NODE}{node_ip}": 1.0}
    resources.update({f"{RESOURCE_LABEL}{label}": 1000.0 for label in labels})
    return json.dumps(resources)


def _common(
    node_ip: str,
    num_gpus: int | None,
    temp_dir: Path | None,
    labels: tuple[str, ...],
    num_cpus: int | None,
) -> list[str]:
    args = [
        f"--node-ip-address={node_ip}",
        "--disable-usage-stats",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--resources={_resources(node_ip, labels)}",
    ]
    if num_gpus is not None:
        args.append(f"--num-gpus={num_gpus}")
    if num_cpus is not None:
        args.append(f"--num-cpus={num_cpus}")
    if temp_dir is not None:
        args.append(f"--temp-dir={temp_dir}")
    return args


def free_gpu_env(num_gpus: int | None) -> tuple[int | None, dict[str, str]]:
    """Offer Ray only the GPUs that are free now (the queue's free-GPU rule)."""
    if num_gpus is not None:
        return num_gpus, {}
    from xpkit.queue.allocate import GpuAllocator

    free = [s.index for s in GpuAllocator().states() if s.free]
    return len(free), {"CUDA_VISIBLE_DEVICES": ",".join(map(str, free))}


def start_head(
    *,
    node_ip: str,
    port: int,
    num_gpus: int | None,
    temp_dir: Path | None,
    labels: tuple[str, ...] = (),
    num_cpus: int | None = None,
    dashboard: bool = False,
) -> NodeStart:
    check_node_ip(node_ip)
    token = XP_RAY_TOKEN.get() or secrets.token_hex(24)
    token_path().parent.mkdir(parents=True, exist_ok=True)
    token_path().write_text(token + "\n")
    token_path().chmod(0o600)
    gpus, env = free_gpu_env(num_gpus)
    os.environ.update(env)
    args = ["--head", f"--port={port}", *_common(node_ip, gpus, temp_dir, labels, num_cpus)]
    args += (
        ["--include-dashboard=true", "--dashboard-host=127.0.0.1"]
        if dashboard
        else ["--include-dashboard=false"]
    )
    return _start(args, token, node_ip, f"{node_ip}:{port}", gpus)


def join(
    address: str,
    *,
    node_ip: str,
    num_gpus: int | None,
    temp_dir: Path | None,
    labels: tuple[str, ...] = (),
    num_cpus: int | None = None,
) -> NodeStart:
    check_node_ip(node_ip)
    gpus, env = free_gpu_env(num_gpus)
    os.environ.update(env)
    args = [f"--address={address}", *_common(node_ip, gpus, temp_dir, labels, num_cpus)]
    return _start(args, load_token(), node_ip, address, gpus)


def recorded_nodes() -> list[dict[str, Any]]:
    folder = state_dir() / "nodes"
    nodes = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            nodes.append({**json.loads(path.read_text()), "file": str(path)})
        except (OSError, ValueError):
            continue
    return nodes


def stop(node_ip: str | None = None) -> list[int]:
    """Kill the processes xpkit's `ray start`s created (and their descendants)."""
    import psutil

    killed = []
    for node in recorded_nodes():
        if node_ip and node.get("node_ip") != node_ip:
            continue
        procs = []
        for pid in node.get("pids", []):
            try:
                proc = psutil.Process(pid)
                procs += [proc, *proc.children(recursive=True)]
            except psutil.Error:
                continue
        for proc in procs:
            try:
                proc.kill()
                killed.append(proc.pid)
            except psutil.Error:
                continue
        psutil.wait_procs(procs, timeout=10)
        Path(node["file"]).unlink(missing_ok=True)
    return sorted(set(killed))


def _busy(node_ip: str) -> bool:
    """Whether an xp run executes on the node xp started with this address."""
    import psutil

    for node in recorded_nodes():
        if node.get("node_ip") != node_ip:
            continue
        for pid in node.get("pids", []):
            try:
                children = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    if child.name().startswith("ray::execute_re"):
                        return True
                except psutil.Error:
                    continue
    return False


def watch(
    address: str,
    *,
    node_ip: str,
    temp_dir: Path | None,
    labels: tuple[str, ...] = (),
    num_cpus: int | None = None,
    interval: float = 30.0,
    rounds: int | None = None,
) -> None:
    """Keep this node offering exactly the GPUs that are free: when a colleague starts
    or stops using one, and no xp run executes here, restart the node with the new set
    (Ray cannot change a running node's GPUs)."""
    from xpkit.queue.allocate import GpuAllocator

    def free() -> list[int]:
        return [s.index for s in GpuAllocator().states() if s.free]

    # What the join in this process offered (it set CUDA_VISIBLE_DEVICES for Ray).
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    offered = [int(i) for i in visible.split(",") if i.strip().isdigit()]
    done = 0
    while rounds is None or done < rounds:
        time.sleep(interval)
        done += 1
        now = free()
        if now == offered or _busy(node_ip):
            continue
        print(f"xp cluster: free GPUs changed {offered} -> {now}; re-offering", flush=True)
        stop(node_ip)
        join(
            address,
            node_ip=node_ip,
            num_gpus=None,
            temp_dir=temp_dir,
            labels=labels,
            num_cpus=num_cpus,
        )
        offered = now
