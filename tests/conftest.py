"""Shared fixtures: real git projects, an isolated cache, a fake nvidia-smi, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reliability_record import (  # noqa: F401 - hooks: RELIABILITY.md
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_xdist_node_collection_finished,
)

XP = [sys.executable, "-m", "xpkit.cli.main"]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own cache (index, worktrees) and no inherited run."""
    monkeypatch.setenv("XP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XP_GPU_PROBE", "none")
    # `python` in commands must be this interpreter, which has xpkit installed.
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("XP_RUN_DIR", "XP_RUN_NAME", "XP_EXPERIMENT_ID", "XP_TRIAL", "XP_RUNS"):
        monkeypatch.delenv(name, raising=False)
    yield


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


TRAIN_PY = textwrap.dedent(
    """\
    import argparse, sys, time
    import xpkit as xp

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    run = xp.init(config=vars(args))
    print("started", flush=True)
    time.sleep(args.sleep)
    print("VERSION", open("version.txt").read().strip(), flush=True)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1) * args.lr, "acc": 0.5 + step * 0.1}, step=step)
    print("done", args.lr, args.seed)
    print("to stderr", file=sys.stderr)
    """
)


def runs_of(runs_root: Path) -> list[Path]:
    """The run directories of a runs root, by name (trial order within an experiment)."""
    if not runs_root.exists():
        return []
    return sorted(p for p in runs_root.iterdir() if not p.name.startswith("."))


def read_run(run: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((run / "run.json").read_text())
    return result


def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def git_project(tmp_path: Path) -> Path:
    """A real git repository with one commit: train.py, version.txt, an experiment."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    (root / "train.py").write_text(TRAIN_PY)
    (root / "version.txt").write_text("v1\n")
    (root / "xp.toml").write_text('runs = "runs"\nlink = []\n')
    (root / ".gitignore").write_text("/runs/\n")
    exp = root / "experiments" / "toy"
    exp.mkdir(parents=True)
    (exp / "01_base.xp.toml").write_text(
        textwrap.dedent(
            """\
            id = "abc123"
            name = "base"
            command = "python train.py --lr {lr} --seed {seed}"
            tags = ["toy"]

            [grid]
            lr = [0.1, 0.01]
            seed = [0]
            """
        )
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def runs_root(git_project: Path) -> Path:
    return git_project / "runs"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_xp(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> Result:
    """Run the real `xp` CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [*XP, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def xp() -> Callable[..., Result]:
    return run_xp


FAKE_SMI = textwrap.dedent(
    """\
    #!/bin/sh
    # A fake nvidia-smi: two GPUs, a process on GPU 1.
    case "$*" in
      *--query-gpu=*)
        echo "0, GPU-aaaa, NVIDIA Fake A100, 40960, 3, 550.54.15"
        echo "1, GPU-bbbb, NVIDIA Fake A100, 40960, 20480, 550.54.15" ;;
      *--query-compute-apps=*)
        echo "GPU-bbbb, 4242, 20470" ;;
      *)
        echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |" ;;
    esac
    """
)


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `nvidia-smi` first on PATH, and the probe told to use it."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XP_GPU_PROBE", "nvidia-smi")
    return smi


@dataclass
class FakeGpus:
    """Fake GPUs described by a JSON file that tests can rewrite (a colleague's job)."""

    path: Path

    def set(self, gpus: list[dict[str, object]]) -> None:
        self.path.write_text(json.dumps({"driver": "550.54.15", "cuda": "12.4", "gpus": gpus}))


@pytest.fixture
def gpu_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGpus:
    """4 fake GPUs (index 1 busy with a foreign process) via xpkit's fake nvidia-smi."""
    bin_dir = tmp_path / "fake-smi-bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nexec {sys.executable} -m xpkit.capture.fake_smi "$@"\n')
    smi.chmod(0o755)
    fake = FakeGpus(tmp_path / "gpus.json")
    fake.set([
        {"name": "Fake A100"},
        {"name": "Fake A100", "memory_used_mib": 30000, "processes": [{"pid": 4242, "used_mib": 30000}]},
        {"name": "Fake A100"},
        {"name": "Fake A100"},
    ])  # fmt: skip
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XP_FAKE_GPUS", str(fake.path))
    monkeypatch.setenv("XP_GPU_PROBE", "nvidia-smi")
    monkeypatch.setenv("XP_GPU_GRACE", "0.5")
    return fake


@pytest.fixture
def worker_procs(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `xp worker` processes, each in its own session with its output in a file
    under tmp_path; at the end each one and its runs are killed by process group."""
    import signal

    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"worker{len(started)}.log", "wb") as log:
            proc = subprocess.Popen([*XP, "worker", *args], cwd=cwd, stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                    start_new_session=True)  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# Tests that start a Ray cluster run one after another in one xdist worker (two clusters
# at once on 2 cores time out starting); every other test is its own unit of work.
# (xdist's own `--dist loadgroup` marks do not take with pytest 9: it renames node ids.)
RAY_CLUSTER_TESTS = ("tests/integration/test_ray.py", "tests/reliability/test_scheduler.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class RayClustersTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "ray" if nodeid.startswith(RAY_CLUSTER_TESTS) else nodeid

    return RayClustersTogether(config, log)
