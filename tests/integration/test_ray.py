"""The queue on a real two-node Ray cluster on loopback (head 127.0.0.2, node
127.0.0.3, fake GPUs), started with `xp cluster` and stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import XP, FakeGpus, Result, git, read_run, runs_of, wait_for
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration  # runs in one xdist worker: see conftest.py
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xpkit[ray]')")
psutil = pytest.importorskip("psutil")

HEAD, NODE = "127.0.0.2", "127.0.0.3"
JOB = textwrap.dedent(
    """\
    import os, sys, time
    import xpkit as xp
    run = xp.init()
    print("CVD=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), flush=True)
    for i in range(3):
        run.log({"loss": 1.0 / (i + 1)})
    time.sleep(float(sys.argv[1]))
    """
)
RUN_FILES = {"run.json", "config.json", "git.json", "git.diff", "env.json", "output.log",
             "metrics.jsonl", "summary.json", "artifacts"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(git_project: Path, xp: Callable[..., Result]) -> Iterator[str]:
    (git_project / "job.py").write_text(JOB)
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "job")
    temp = Path(tempfile.mkdtemp(prefix="xpray", dir="/tmp"))  # short: Ray's socket paths
    port = free_port()
    address = f"{HEAD}:{port}"
    common = ["--num-gpus", "2", "--num-cpus", "2", "--temp-dir", str(temp)]
    head = xp("cluster", "head", "--node-ip", HEAD, "--port", str(port), *common, cwd=git_project)
    try:
        assert head.returncode == 0, head.output
        joined = xp("cluster", "join", address, "--node-ip", NODE, "--label", "n2", *common,
                    cwd=git_project)  # fmt: skip
        assert joined.returncode == 0, joined.output
        yield address
    finally:
        _stop_cluster(xp, git_project, temp)


def _stop_cluster(xp: Callable[..., Result], project: Path, temp: Path) -> None:
    """`xp cluster stop`, then check that no process it recorded is left."""
    pids = [p for node in _nodes() for p in node["pids"]]  # type: ignore[attr-defined]
    assert xp("cluster", "stop", cwd=project).returncode == 0
    time.sleep(1)
    shutil.rmtree(temp, ignore_errors=True)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == [], f"Ray processes left after xp cluster stop: {alive}"


def _nodes() -> list[dict[str, object]]:
    folder = Path(os.environ["XP_CACHE_DIR"]) / "ray" / "nodes"
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []


def _connections_are_loopback() -> list[str]:
    pids = {int(p) for node in _nodes() for p in node["pids"]}  # type: ignore[union-attr]
    outside = []
    for pid in list(pids):
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            try:
                conns = proc.net_connections(kind="inet")
            except psutil.Error:
                continue
            for conn in conns:
                for addr in (conn.laddr, conn.raddr):
                    if addr and not addr.ip.replace("::ffff:", "").startswith("127.") \
                            and addr.ip not in ("0.0.0.0", "::"):  # fmt: skip
                        outside.append(f"{proc.name()} {addr.ip}:{addr.port}")
    return outside


def test_sweep_spreads_over_both_nodes(
    cluster: str, git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "experiments" / "toy" / "09_ray.xp.toml").write_text(
        'id = "ray999"\ncommand = "python job.py {seconds}"\ngpus = 1\n'
        "[grid]\nseconds = [1]\ni = [0, 1, 2, 3, 4, 5, 6, 7]\n"
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "ray sweep")
    assert xp("submit", "experiments/toy/09_ray.xp.toml", cwd=git_project).returncode == 0
    started = time.monotonic()
    dispatcher = xp("worker", "--ray", cluster, "--node-ip", HEAD, "--once", cwd=git_project,
                    timeout=240)  # fmt: skip
    elapsed = time.monotonic() - started
    assert dispatcher.returncode == 0, dispatcher.output
    runs = runs_of(runs_root)
    assert len(runs) == 8
    nodes = set()
    for run in runs:
        meta = read_run(run)
        assert meta["status"] == "finished", (run.name, meta.get("reason"))
        assert {p.name for p in run.iterdir()} >= RUN_FILES
        output = (run / rd.OUTPUT_LOG).read_text()
        assert f"CVD={meta['gpus'][0]}" in output and len(meta["gpus"]) == 1
        assert len((run / rd.METRICS).read_text().splitlines()) == 3
        assert json.loads((run / rd.SUMMARY_JSON).read_text())["loss"] == pytest.approx(1 / 3)
        env = json.loads((run / rd.ENV_JSON).read_text())
        assert env["env"]["variables"]["CUDA_VISIBLE_DEVICES"] == str(meta["gpus"][0])
        nodes.add(meta["node"])
    assert nodes == {HEAD, NODE}
    assert _connections_are_loopback() == []
    print(f"8 runs of 1 s on 4 fake GPUs in {elapsed:.1f} s")

    # A failing command fails like a local run; a restarted dispatcher reconciles.
    fail = ["--", "python", "-c", "import sys; print('boom'); sys.exit(3)"]
    (failing,) = xp("submit", *fail, cwd=git_project).stdout.split()
    (orphan,) = xp("submit", "--", "python", "job.py", "60", cwd=git_project).stdout.split()
    first = subprocess.Popen([*XP, "worker", "--ray", cluster, "--node-ip", HEAD], cwd=git_project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: "CVD=" in (runs_root / orphan / rd.OUTPUT_LOG).read_text(), timeout=180)
        wait_for(lambda: read_run(runs_root / failing)["status"] == "failed", timeout=60)
    finally:
        first.kill()  # the dispatcher dies; its task goes with it
        first.wait()
    meta = read_run(runs_root / failing)
    assert meta["exit_code"] == 3 and "boom" in (runs_root / failing / rd.OUTPUT_LOG).read_text()
    again = xp(
        "worker", "--ray", cluster, "--node-ip", HEAD, "--once", cwd=git_project, timeout=120
    )
    assert again.returncode == 0, again.output
    assert read_run(runs_root / orphan)["status"] == "lost"
    assert "dispatcher" in str(read_run(runs_root / orphan)["reason"])


def test_cancel_status_and_a_node_killed_mid_run(
    cluster: str, git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp(
        "submit", "--gpus", "1", "--label", "n2", "--", "python", "job.py", "60", cwd=git_project
    )
    (name,) = result.stdout.split()
    (other,) = xp(
        "submit", "--gpus", "1", "--", "python", "job.py", "60", cwd=git_project
    ).stdout.split()
    dispatcher = subprocess.Popen([*XP, "worker", "--ray", cluster, "--node-ip", HEAD, "--requeue-lost"],
                                  cwd=git_project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)  # fmt: skip
    try:
        wait_for(lambda: "CVD=" in (runs_root / name / rd.OUTPUT_LOG).read_text(), timeout=90)
        wait_for(lambda: "CVD=" in (runs_root / other / rd.OUTPUT_LOG).read_text(), timeout=90)
        assert read_run(runs_root / name)["node"] == NODE
        wait_for(lambda: name in xp("status", cwd=git_project).stdout, timeout=30)
        status = xp("status", cwd=git_project).stdout
        assert f"node {NODE}: 2 GPU(s), 1 used" in status, status
        follow = xp("logs", other, cwd=git_project).stdout  # streamed from the node
        assert "CVD=" in follow
        assert "stopping" in xp("cancel", other, cwd=git_project).stdout
        # The node's runner cannot see the intent; the dispatcher records who stopped it.
        wait_for(lambda: read_run(runs_root / other)["status"] == "cancelled", timeout=60)
        assert "xp cancel" in read_run(runs_root / other)["reason"]
        (node,) = [n for n in _nodes() if n["node_ip"] == NODE]
        victims = []
        for pid in node["pids"]:  # type: ignore[union-attr]
            try:
                proc = psutil.Process(pid)
                victims += [proc, *proc.children(recursive=True)]
            except psutil.Error:
                continue
        for proc in victims:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        wait_for(lambda: read_run(runs_root / name)["status"] == "lost", timeout=60)
        wait_for(lambda: "requeued_as" in read_run(runs_root / name), timeout=30)
        requeued = read_run(runs_root / name)["requeued_as"]
        assert read_run(runs_root / requeued)["status"] == "queued"  # no node has n2 now
    finally:
        dispatcher.send_signal(signal.SIGTERM)
        try:
            dispatcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dispatcher.kill()


def test_join_watch_re_offers_gpus_as_their_use_changes(
    git_project: Path, gpu_file: FakeGpus, xp: Callable[..., Result]
) -> None:
    gpu_file.set([{"name": "A"}, {"name": "B"}])
    temp = Path(tempfile.mkdtemp(prefix="xpraw", dir="/tmp"))
    port = free_port()
    address = f"{HEAD}:{port}"
    common = ["--num-cpus", "1", "--temp-dir", str(temp)]
    assert xp("cluster", "head", "--node-ip", HEAD, "--port", str(port), "--num-gpus", "0",
              *common, cwd=git_project).returncode == 0  # fmt: skip
    watcher = subprocess.Popen([*XP, "cluster", "join", address, "--node-ip", NODE, "--watch",
                                "--interval", "0.5", *common], cwd=git_project,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for(lambda: any(n["node_ip"] == NODE for n in _nodes()), timeout=60)
        assert [n["gpus"] for n in _nodes() if n["node_ip"] == NODE] == [2]
        gpu_file.set([{"name": "A"}, {"name": "B", "processes": [{"pid": 7, "used_mib": 8000}]}])
        wait_for(lambda: [n["gpus"] for n in _nodes() if n["node_ip"] == NODE] == [1], timeout=60)
        (node,) = [n for n in _nodes() if n["node_ip"] == NODE]
        assert node["visible"] == "0"  # only the free GPU is offered
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
        _stop_cluster(xp, git_project, temp)


def test_xp_sweep_over_the_ray_backend(
    cluster: str, git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    """The same 30-trial TPE sweep as on local workers, over a Ray dispatcher: the optimum
    found, never more than `parallel` trials out, pruned trials stopped on their node
    within 5 s, the count exact, trials on both nodes, every connection on loopback."""
    pytest.importorskip("optuna")
    from sweeps import ActiveCount, check_tpe_sweep, sweep_file, trial_runs

    path = sweep_file(git_project, expid="raysw1", trials=30, parallel=3, steps=12, pause=0.25)
    dispatcher = subprocess.Popen([*XP, "worker", "--ray", cluster, "--node-ip", HEAD],
                                  cwd=git_project, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
    watcher = ActiveCount(runs_root, "raysw1")
    watcher.start()
    try:
        result = xp("sweep", str(path), cwd=git_project, timeout=900)
    finally:
        watcher.done.set()
        dispatcher.send_signal(signal.SIGTERM)
        dispatcher.wait(timeout=60)
    assert result.returncode == 0, result.output
    check_tpe_sweep(runs_root, "raysw1", watcher)
    assert {runs[-1]["node"] for runs in trial_runs(runs_root, "raysw1").values()} == {HEAD, NODE}
    assert _connections_are_loopback() == []


def test_a_run_with_an_env_builds_it_on_the_node_that_runs_it(
    cluster: str, git_project: Path, runs_root: Path, xp: Callable[..., Result], tmp_path: Path
) -> None:
    from wheels import make_wheel, served_index

    make_wheel(tmp_path / "wheels", "xptoy", "2.0")
    with served_index(tmp_path / "wheels", tmp_path / "index") as index:
        (git_project / "toy.py").write_text(
            "import sys, xptoy\nprint('TOY', xptoy.__version__, sys.prefix, flush=True)\n"
        )
        (git_project / "requirements.txt").write_text("xptoy==2.0\n")
        (git_project / "xp.toml").write_text(
            f'runs = "runs"\nlink = []\nenv = {{ requirements = "requirements.txt", '
            f'index_url = "{index}" }}\n'
        )
        git(git_project, "add", "-A")
        git(git_project, "commit", "-qm", "env")
        submitted = xp("submit", "--gpus", "1", "--label", "n2", "--", "python", "toy.py",
                       cwd=git_project)  # fmt: skip
        (name,) = submitted.stdout.split()
        dispatcher = xp("worker", "--ray", cluster, "--node-ip", HEAD, "--once", cwd=git_project,
                        timeout=240)  # fmt: skip
    assert dispatcher.returncode == 0, dispatcher.output
    meta = read_run(runs_root / name)
    assert meta["status"] == "finished" and meta["node"] == NODE, meta.get("reason")
    output = (runs_root / name / rd.OUTPUT_LOG).read_text()
    env = json.loads((runs_root / name / rd.ENV_JSON).read_text())["environment"]
    assert "xp: built environment" in output  # by the task, on the node
    assert f"TOY 2.0 {env['path']}" in output and env["packages"] == ["xptoy==2.0"]
    assert _connections_are_loopback() == []
