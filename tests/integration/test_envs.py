"""Per-run Python environments with real uv: a package index of hand-made wheels served
on 127.0.0.1, real `xp run`, `xp worker` and `xp env` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import XP, FakeGpus, Result, git, runs_of, wait_for
from conftest import read_run as info
from wheels import free_port, make_wheel, served_index, silent_index

pytestmark = pytest.mark.integration

SHOW_TOY = textwrap.dedent(
    """\
    import os, sys, time
    import xptoy
    import xpkit as xp
    print("TOY", xptoy.__version__, "PREFIX", sys.prefix, flush=True)
    run = xp.init()
    run.log({"toy": float(xptoy.__version__)})
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """
)


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(folder, "xptoy", version)
    return folder


@pytest.fixture
def index(wheels: Path, tmp_path: Path) -> Iterator[str]:
    with served_index(wheels, tmp_path / "index") as url:
        yield url


def envs_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "envs"  # XP_CACHE_DIR of the isolated_env fixture


def env_project(root: Path, index: str, version: str = "1.0") -> Path:
    (root / "show_toy.py").write_text(SHOW_TOY)
    (root / "requirements.txt").write_text(f"xptoy=={version}\n")
    (root / "xp.toml").write_text(
        f'runs = "runs"\nlink = []\nenv = {{ requirements = "requirements.txt", '
        f'index_url = "{index}" }}\n'
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"xptoy {version}")
    return root


def toy_line(run: Path) -> str:
    lines = [line for line in (run / "output.log").read_text().splitlines() if "TOY" in line]
    assert lines, (run / "output.log").read_text()
    return lines[-1]


def env_key(run: Path) -> str:
    return str(json.loads((run / "env.json").read_text())["environment"]["key"])


def test_two_snapshots_run_in_their_own_environments_and_a_rerun_reuses_one(
    git_project: Path, index: str, xp: Callable[..., Result], tmp_path: Path
) -> None:
    root = env_project(git_project, index, "1.0")
    first = xp("run", "--", "python", "show_toy.py", cwd=root)
    assert first.returncode == 0, first.output
    assert "building the Python environment of requirements.txt" in first.stderr
    (root / "requirements.txt").write_text("xptoy==2.0\n")
    git(root, "commit", "-q", "-am", "xptoy 2.0")
    second = xp("run", "--", "python", "show_toy.py", cwd=root)
    assert second.returncode == 0, second.output
    again = xp("run", "--", "python", "show_toy.py", cwd=root)
    assert again.returncode == 0, again.output
    assert "building" not in again.stderr  # the same pins: the environment is there
    runs = runs_of(root / "runs")
    assert [toy_line(r).split()[1] for r in runs] == ["1.0", "2.0", "2.0"]
    keys = [env_key(r) for r in runs]
    assert keys[0] != keys[1] == keys[2]
    for run, key in zip(runs, keys, strict=True):
        assert f"PREFIX {envs_dir(tmp_path) / key}" in toy_line(run)
        env = json.loads((run / "env.json").read_text())
        assert env["environment"]["packages"] == [f"xptoy=={toy_line(run).split()[1]}"]
        assert env["python"]["executable"] == str(envs_dir(tmp_path) / key / "bin" / "python")
        assert json.loads((run / "summary.json").read_text())["toy"] == float(
            toy_line(run).split()[1]
        )  # xpkit was importable in an environment that does not have it
    listed = xp("env", "ls", "--json", cwd=root)
    assert listed.returncode == 0, listed.output
    by_key = {e["key"]: e for e in json.loads(listed.stdout)}
    assert set(by_key) == set(keys)
    assert by_key[keys[1]]["runs"] == [runs[1].name, runs[2].name]
    shown = xp("env", "ls", cwd=root)
    assert keys[0] in shown.stdout and "requirements.txt" in shown.stdout


def test_an_experiment_file_chooses_its_environment_or_none(
    git_project: Path, index: str, xp: Callable[..., Result]
) -> None:
    root = env_project(git_project, index, "1.0")
    (root / "pinned3.txt").write_text("xptoy==3.0\n")
    exp = root / "experiments" / "toy"
    (exp / "02_env.xp.toml").write_text(
        'id = "env002"\ncommand = "python show_toy.py"\n'
        f'env = {{ requirements = "pinned3.txt", index_url = "{index}" }}\n'
    )
    (exp / "03_noenv.xp.toml").write_text(
        'id = "env003"\ncommand = "python -c \'import sys; print(sys.prefix)\'"\nenv = false\n'
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "experiments")
    assert xp("run", "experiments/toy/02_env.xp.toml", cwd=root).returncode == 0
    assert xp("run", "experiments/toy/03_noenv.xp.toml", cwd=root).returncode == 0
    with_env, without = runs_of(root / "runs")
    assert toy_line(with_env).split()[1] == "3.0"
    assert info(without)["env"] is None
    assert "environment" not in json.loads((without / "env.json").read_text())


def test_uv_lock_and_pyproject_environments(
    git_project: Path, index: str, xp: Callable[..., Result], tmp_path: Path
) -> None:
    from xpkit.execute.envs import uv_binary

    root = git_project
    (root / "show_toy.py").write_text(SHOW_TOY)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "toyproject"\nversion = "0.1"\nrequires-python = ">=3.10"\n'
        'dependencies = ["xptoy==2.0"]\n'
    )
    locked = subprocess.run(
        [uv_binary(), "lock", "--no-config", "--index-url", index],
        cwd=root, capture_output=True, text=True,
        env={**os.environ, "UV_CACHE_DIR": str(tmp_path / "uvcache")},
    )  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    for file, name in (("uv.lock", "lock"), ("pyproject.toml", "pyproject")):
        (root / "xp.toml").write_text(
            f'runs = "runs"\nlink = []\nenv = {{ requirements = "{file}", index_url = "{index}" }}\n'
        )
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", name)
        result = xp("run", "--name", name, "--", "python", "show_toy.py", cwd=root)
        assert result.returncode == 0, result.output
    lock_run, pyproject_run = runs_of(root / "runs")
    assert toy_line(lock_run).split()[1] == toy_line(pyproject_run).split()[1] == "2.0"
    assert info(lock_run)["env"]["files"] == ["pyproject.toml", "uv.lock"]
    assert env_key(lock_run) != env_key(pyproject_run)


def test_four_workers_build_a_new_environment_once(
    git_project: Path, wheels: Path, tmp_path: Path, xp: Callable[..., Result],
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    """Four workers of one machine see eight runs of one new snapshot at once: one of
    them builds the environment (slowly: every wheel download waits 1 s), the others
    wait for it; every run executes in it."""
    with served_index(wheels, tmp_path / "index", delay=1.0) as index:
        root = env_project(git_project, index, "2.0")
        for _ in range(8):
            assert xp("submit", "--", "python", "show_toy.py", cwd=root).returncode == 0
        workers = [worker_procs("--once", cwd=root) for _ in range(4)]
        for worker in workers:
            worker.wait(timeout=120)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(4)]
    built = [line for log in logs for line in log.splitlines() if "built environment" in line]
    assert len(built) == 1, "\n".join(logs)
    runs = runs_of(root / "runs")
    assert len(runs) == 8
    assert {info(r)["status"] for r in runs} == {"finished"}, "\n".join(logs)
    assert {env_key(r) for r in runs} == {built[0].split("built environment ")[1].split()[0]}
    assert {toy_line(r).split()[1] for r in runs} == {"2.0"}


def test_a_worker_builds_while_the_run_waits_holding_no_gpu(
    git_project: Path, wheels: Path, tmp_path: Path, gpu_file: FakeGpus,
    xp: Callable[..., Result], worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    with served_index(wheels, tmp_path / "index", delay=3.0) as index:
        root = env_project(git_project, index, "1.0")
        assert xp("submit", "--gpus", "1", "--", "python", "show_toy.py", cwd=root).returncode == 0
        (run,) = runs_of(root / "runs")
        worker_procs(cwd=root)
        log = tmp_path / "worker0.log"
        wait_for(lambda: "building the Python environment" in log.read_text(), timeout=30)
        assert info(run)["status"] == "queued" and info(run)["gpus"] == []
        assert "waits: building its Python environment (requirements.txt)" in log.read_text()
        queue = xp("queue", cwd=root)
        assert run.name in queue.stdout
        wait_for(lambda: info(run)["status"] == "finished", timeout=60)
    assert info(run)["gpus"] and toy_line(run).split()[1] == "1.0"


@pytest.mark.parametrize("how", ["silent", "refused"])
def test_an_unreachable_index_fails_the_run_within_30_s_naming_it(
    git_project: Path, xp: Callable[..., Result], how: str, tmp_path: Path
) -> None:
    with silent_index() as url:
        if how == "refused":
            url = f"http://127.0.0.1:{free_port()}/simple"  # nothing listens there
        root = env_project(git_project, url, "1.0")
        started = time.monotonic()
        result = xp("run", "--", "python", "show_toy.py", cwd=root, timeout=60)
        took = time.monotonic() - started
    assert result.returncode != 0
    assert took < 30
    assert f"package index {url} is unreachable" in result.stderr
    assert "Traceback" not in result.output
    (run,) = runs_of(root / "runs")
    assert info(run)["status"] == "failed" and url in info(run)["reason"]
    assert not [p for p in envs_dir(tmp_path).glob("*") if not p.name.startswith(".")]


def test_a_build_failure_fails_the_worker_run_with_uv_words(
    git_project: Path, index: str, xp: Callable[..., Result], gpu_file: FakeGpus,
    worker_procs: Callable[..., subprocess.Popen[bytes]], tmp_path: Path,
) -> None:  # fmt: skip
    root = env_project(git_project, index, "9.9")  # no such version on the index
    assert xp("submit", "--gpus", "1", "--", "python", "show_toy.py", cwd=root).returncode == 0
    worker_procs("--once", cwd=root).wait(timeout=60)
    (run,) = runs_of(root / "runs")
    record = info(run)
    assert record["status"] == "failed" and record["gpus"] == []
    assert "could not be built" in record["reason"] and "xptoy==9.9" in record["reason"]
    shown = xp("show", run.name, cwd=root)
    assert "could not be built" in shown.stdout


def test_kill_9_during_a_build_leaves_no_environment_that_runs_would_use(
    git_project: Path, wheels: Path, tmp_path: Path, xp: Callable[..., Result]
) -> None:
    with served_index(wheels, tmp_path / "index", delay=30.0) as index:
        root = env_project(git_project, index, "1.0")
        proc = subprocess.Popen([*XP, "run", "--", "python", "show_toy.py"], cwd=root,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        wait_for(lambda: any(envs_dir(tmp_path).glob(".building-*/bin/python")), timeout=30)
        building = next(envs_dir(tmp_path).glob(".building-*"))
        key = building.name.split("-")[1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not _uv_writing(building), timeout=10)  # uv died with its parent
        assert not (envs_dir(tmp_path) / key).exists()
        (tmp_path / "index" / "delay").write_text("0")
        again = xp("run", "--", "python", "show_toy.py", cwd=root)
    assert again.returncode == 0, again.output
    assert not building.exists()  # the next builder removed what the killed one left
    assert env_key(runs_of(root / "runs")[-1]) == key
    assert toy_line(runs_of(root / "runs")[-1]).split()[1] == "1.0"


def _uv_writing(folder: Path) -> bool:
    """Whether a process still has `folder` (a killed build's) as its working directory
    or argument: its uv would keep writing there."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                return True
        except OSError:
            continue
    return False


def test_gc_removes_only_environments_no_queued_or_running_run_needs(
    git_project: Path, index: str, xp: Callable[..., Result], tmp_path: Path,
    worker_procs: Callable[..., subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    root = env_project(git_project, index, "1.0")
    assert xp("run", "--", "python", "show_toy.py", cwd=root).returncode == 0  # done: env 1.0
    (root / "requirements.txt").write_text("xptoy==2.0\n")
    git(root, "commit", "-q", "-am", "2.0")
    assert xp("submit", "--", "python", "show_toy.py", "60", cwd=root).returncode == 0
    worker = worker_procs(cwd=root)
    running = runs_of(root / "runs")[-1]
    wait_for(lambda: info(running)["status"] == "running", timeout=60)  # env 2.0, running
    worker.send_signal(signal.SIGTERM)  # takes nothing more; the running run goes on
    (root / "requirements.txt").write_text("xptoy==3.0\n")
    git(root, "commit", "-q", "-am", "3.0")
    built = xp("env", "build", cwd=root)  # env 3.0, built ahead for the queued run below
    assert built.returncode == 0, built.output
    assert xp("submit", "--", "python", "show_toy.py", cwd=root).returncode == 0
    keys = {e["key"]: e for e in json.loads(xp("env", "ls", "--json", cwd=root).stdout)}
    assert len(keys) == 3
    gc = xp("env", "gc", "--keep", "0", "--older-than", "0s", cwd=root)
    assert gc.returncode == 0, gc.output
    left = json.loads(xp("env", "ls", "--json", cwd=root).stdout)
    assert sorted(e["packages"][0] for e in left) == ["xptoy==2.0", "xptoy==3.0"], gc.output
    assert "removed 1 environment(s)" in gc.stdout
    assert f"kept {env_key(running)}: {running.name} needs it" in gc.stdout
    os.killpg(worker.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ('"requirement.txt"', "env file requirement.txt does not exist"),
        ('{ requirement = "requirements.txt" }', "unknown key 'requirement'"),
        ('{ requirements = "requirements.txt", no_index = true }', "no_index = true needs"),
        ('{ requirements = "requirements.txt", index_url = "https://u:pw@mirror/simple" }',
         "holds a password"),
        ('{ requirements = "requirements.txt", index_url = "mirror/simple" }',
         "is not an http(s):// or file:// URL"),
        ('{ requirements = "requirements.txt", python = "3.11 ; rm" }', "env.python must be"),
        ('{ requirements = "../outside.txt" }', "is outside the project"),
        ('"local.txt"', "local.txt:2: '-e .' installs a folder of the project"),
        ('"includes.txt"', "env file missing.txt does not exist"),
        ('"ignored.txt"', "is ignored by git"),
        ("3", "'env' must be a file like"),
    ],
    ids=["missing", "typo-key", "no-index-alone", "password", "bad-url", "bad-python",
         "outside", "editable", "missing-include", "ignored", "number"],
)  # fmt: skip
def test_bad_env_settings_are_clear_errors_before_any_run(
    git_project: Path, xp: Callable[..., Result], env: str, expected: str
) -> None:
    root = git_project
    (root / "requirements.txt").write_text("xptoy==1.0\n")
    (root / "local.txt").write_text("xptoy==1.0\n-e .\n")
    (root / "includes.txt").write_text("-r missing.txt\n")
    (root / "ignored.txt").write_text("xptoy\n")
    (root / ".gitignore").write_text("/runs/\nignored.txt\n")
    (root / "xp.toml").write_text(f'runs = "runs"\nlink = []\nenv = {env}\n')
    result = xp("run", "--", "python", "train.py", cwd=root)
    assert result.returncode == 2, result.output
    assert expected in result.stderr, result.stderr
    assert "xp.toml:3" in result.stderr and "Traceback" not in result.stderr
    assert runs_of(root / "runs") == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["env", "build"], "xp.toml has no env"),
        (["env", "build", "nothing.txt"], "nothing.txt does not exist"),
        (["env", "build", "experiments/toy/01_base.xp.toml"], "runs with the interpreter"),
        (["env", "gc", "--older-than", "soon"], "is not a duration"),
        (["env", "gc", "--keep", "-1"], "-1 is not in the range"),
    ],
    ids=["no-env", "missing-file", "experiment-without-env", "bad-age", "negative-keep"],
)
def test_bad_env_commands_say_what_is_valid(
    git_project: Path, xp: Callable[..., Result], args: list[str], expected: str
) -> None:
    result = xp(*args, cwd=git_project)
    assert result.returncode == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.stderr
