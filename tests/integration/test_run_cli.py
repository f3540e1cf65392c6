"""`xp run` end to end: real git, real subprocesses, the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import XP, Result, git, read_run, runs_of, wait_for
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration
EXP = "experiments/toy/01_base.xp.toml"
RUN_FILES = {"run.json", "config.json", "git.json", "git.diff", "env.json", "output.log",
             "metrics.jsonl", "summary.json", "artifacts"}  # fmt: skip


def test_experiment_sweep_records_every_run(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp("run", EXP, cwd=git_project, env={"MY_API_TOKEN": "supersecret"})
    assert result.returncode == 0, result.output
    assert "VERSION v1" in result.stdout and "to stderr" in result.stdout  # live tee
    runs = runs_of(runs_root)
    assert [p.name for p in runs] == ["abc123_001_base-lr0.1", "abc123_002_base-lr0.01"]
    for path in runs:
        assert {p.name for p in path.iterdir()} >= RUN_FILES
        run = read_run(path)
        assert run["status"] == "finished" and run["exit_code"] == 0
        assert run["peak_rss_bytes"] > 1_000_000  # type: ignore[operator]
        assert run["duration"] > 0  # type: ignore[operator]
        log = (path / rd.OUTPUT_LOG).read_text()
        assert "VERSION v1" in log and "to stderr" in log
        metrics = (path / rd.METRICS).read_text().splitlines()
        assert len(metrics) == 5
        summary = json.loads((path / rd.SUMMARY_JSON).read_text())
        assert summary["acc"] == pytest.approx(0.9)
        env_text = (path / rd.ENV_JSON).read_text()
        assert "supersecret" not in env_text
        assert json.loads(env_text)["env"]["variables"]["MY_API_TOKEN"] == "***"
        git_info = json.loads((path / rd.GIT_JSON).read_text())
        assert git_info["branch"] == "main" and git_info["dirty"] is False
    assert read_run(runs[0])["params"] == {"lr": 0.1, "seed": 0}
    # the sweep's worktree is idle (no users) once its runs are done
    (users,) = (git_project.parent / "cache" / "worktrees").glob("*/wt-1.users")
    assert list(users.iterdir()) == []

    listing = xp("ls", cwd=git_project)
    assert listing.returncode == 0
    assert "abc123_001_base-lr0.1" in listing.stdout and "finished" in listing.stdout
    filtered = xp("ls", "--where", "lr=0.01", "--json", cwd=git_project)
    assert [row["name"] for row in json.loads(filtered.stdout)] == ["abc123_002_base-lr0.01"]
    lines = xp("ls", "--where", "lr=0.01", "--jsonl", cwd=git_project).stdout.splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["abc123_002_base-lr0.01"]
    shown = xp("show", "abc123/1", cwd=git_project)
    assert shown.returncode == 0 and "python train.py --lr 0.1 --seed 0" in shown.stdout
    logs = xp("logs", "abc123_002", cwd=git_project)
    assert "VERSION v1" in logs.stdout


def test_editing_and_committing_during_a_run_changes_nothing_it_executes(
    git_project: Path, runs_root: Path
) -> None:
    proc = subprocess.Popen(
        [*XP, "run", "--", "python", "train.py", "--sleep", "3"],
        cwd=git_project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: any(read_run(p).get("status") == "running" for p in runs_of(runs_root)))
    (git_project / "version.txt").write_text("v2\n")
    git(git_project, "commit", "-qam", "v2")
    git(git_project, "checkout", "-q", "-b", "other")
    (git_project / "version.txt").write_text("v3-uncommitted\n")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "VERSION v1" in out
    (run,) = runs_of(runs_root)
    assert "VERSION v1" in (run / rd.OUTPUT_LOG).read_text()


def test_dirty_tree_run_leaves_index_and_stash_identical(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "version.txt").write_text("v2-dirty\n")
    git(git_project, "add", "version.txt")
    (git_project / "extra.py").write_text("X = 1\n")
    (git_project / "stash.txt").write_text("s")
    git(git_project, "stash", "push", "-u", "-q", "--", "stash.txt")
    index = git_project / ".git" / "index"
    before = (hashlib.sha256(index.read_bytes()).hexdigest(), git(git_project, "stash", "list"),
              git(git_project, "status", "--porcelain"))  # fmt: skip
    result = xp("run", "--", "python", "train.py", cwd=git_project)
    assert result.returncode == 0, result.output
    after = (hashlib.sha256(index.read_bytes()).hexdigest(), git(git_project, "stash", "list"),
             git(git_project, "status", "--porcelain"))  # fmt: skip
    assert before == after
    assert "VERSION v2-dirty" in result.stdout
    (run,) = runs_of(runs_root)
    diff = (run / rd.GIT_DIFF).read_text()
    assert "+X = 1" in diff and "+v2-dirty" in diff
    git_info = json.loads((run / rd.GIT_JSON).read_text())
    assert git_info["dirty"] is True
    assert git(git_project, "show", f"{git_info['snapshot']}:extra.py") == "X = 1\n"


def test_adhoc_commands_group_under_one_experiment_id(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    for _ in range(2):
        assert (
            xp("run", "--tag", "quick", "--", "python", "train.py", cwd=git_project).returncode == 0
        )
    names = [p.name for p in runs_of(runs_root)]
    assert names[0][:6] == names[1][:6]
    assert [n[7:10] for n in names] == ["001", "002"]
    assert read_run(runs_of(runs_root)[0])["tags"] == ["quick"]


def test_param_override_and_name(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp("run", EXP, "--param", "lr=0.5", "--name", "probe", cwd=git_project)
    assert result.returncode == 0, result.output
    (run,) = runs_of(runs_root)
    assert run.name == "abc123_001_probe"
    assert read_run(run)["params"] == {"lr": 0.5, "seed": 0}


def test_dry_run_writes_nothing(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp("run", EXP, "--dry-run", cwd=git_project)
    assert result.returncode == 0
    assert "2 run(s)" in result.stdout and "--lr 0.01 --seed 0" in result.stdout
    assert runs_of(runs_root) == []


def test_link_folders_are_symlinked_into_the_worktree(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    (git_project / "xp.toml").write_text('runs = "runs"\nlink = ["datasets"]\n')
    (git_project / ".gitignore").write_text("/runs/\n/datasets/\n")
    (git_project / "datasets").mkdir()
    (git_project / "datasets" / "d.txt").write_text("data!")
    result = xp("run", "--", "cat", "datasets/d.txt", cwd=git_project)
    assert result.returncode == 0, result.output
    assert "data!" in result.stdout


def test_failed_command_is_recorded_and_exit_code_propagates(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    result = xp("run", "--", "python", "-c", "import sys; sys.exit(3)", cwd=git_project)
    assert result.returncode == 1
    (run,) = runs_of(runs_root)
    info = read_run(run)
    assert info["status"] == "failed" and info["exit_code"] == 3
    assert info["reason"] == "exit code 3"


def test_thirty_concurrent_runs_get_distinct_trials(git_project: Path, runs_root: Path) -> None:
    procs = [
        subprocess.Popen(
            [*XP, "run", "--", "true"],
            cwd=git_project,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(30)
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0, proc.stderr.read() if proc.stderr else ""
    trials = sorted(int(p.name.split("_")[1]) for p in runs_of(runs_root))
    assert trials == list(range(1, 31))
    assert all(read_run(p)["status"] == "finished" for p in runs_of(runs_root))


def test_kill_9_of_the_runner_shows_lost(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    proc = subprocess.Popen([*XP, "run", "--", "sleep", "30"], cwd=git_project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(lambda: any(read_run(p).get("status") == "running" for p in runs_of(runs_root)))
    (run,) = runs_of(runs_root)
    child = read_run(run)["pid"]
    listing = xp("ls", "--json", cwd=git_project)
    assert json.loads(listing.stdout)[0]["status"] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # found at once by the runner's pid (the heartbeat, 60 s, is for other hosts)
    listing = xp("ls", "--json", cwd=git_project)
    assert json.loads(listing.stdout)[0]["status"] == "lost"
    assert "lost" in xp("show", run.name, cwd=git_project).stdout
    assert read_run(run)["status"] == "running"  # shown, not written: the queue writes it
    # the orphaned command was told to stop when its runner died
    wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), timeout=10)


def _zombie(pid: object) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_ctrl_c_forwards_sigint_and_records_killed(git_project: Path, runs_root: Path) -> None:
    script = "import signal, sys, time\n" \
             "signal.signal(signal.SIGINT, lambda *a: (print('got SIGINT', flush=True), sys.exit(5)))\n" \
             "print('ready', flush=True)\ntime.sleep(30)\n"  # fmt: skip
    (git_project / "wait.py").write_text(script)
    proc = subprocess.Popen([*XP, "run", "--", "python", "wait.py"], cwd=git_project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(lambda: any("ready" in (p / rd.OUTPUT_LOG).read_text() for p in runs_of(runs_root)))
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    (run,) = runs_of(runs_root)
    info = read_run(run)
    assert info["status"] == "killed" and info["exit_code"] == 5
    assert "got SIGINT" in (run / rd.OUTPUT_LOG).read_text()


def test_ctrl_c_of_a_grid_cancels_the_run_made_ready_after_it(
    git_project: Path, runs_root: Path
) -> None:
    """A grid creates each next run while the one before it executes; stopped by Ctrl-C
    there, the run made ready is cancelled (never started), and nothing after it exists."""
    (git_project / "wait.py").write_text(
        "import sys, time\nprint('ready', sys.argv[1], flush=True)\ntime.sleep(30)\n"
    )
    experiment = git_project / "experiments" / "stop.xp.toml"
    experiment.write_text('id = "stop01"\ncommand = "python wait.py {i}"\n[grid]\ni = [1, 2, 3]\n')
    proc = subprocess.Popen([*XP, "run", str(experiment)], cwd=git_project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(lambda: len(runs_of(runs_root)) == 2
             and "ready" in (runs_of(runs_root)[0] / rd.OUTPUT_LOG).read_text())  # fmt: skip
    assert read_run(runs_of(runs_root)[1])["status"] == "queued"  # the next one, made ready
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    first, second = runs_of(runs_root)
    assert read_run(first)["status"] == "killed"
    assert read_run(second)["status"] == "cancelled"
    assert "not started" in str(read_run(second)["reason"])
    assert (second / rd.OUTPUT_LOG).read_text() == ""


def test_ctrl_c_escalates_when_the_command_ignores_it(git_project: Path, runs_root: Path) -> None:
    (git_project / "stubborn.py").write_text(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    env = {**os.environ, "XP_KILL_GRACE": "0.5"}
    proc = subprocess.Popen([*XP, "run", "--", "python", "stubborn.py"], cwd=git_project,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(lambda: any("ready" in (p / rd.OUTPUT_LOG).read_text() for p in runs_of(runs_root)))
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - started < 10
    (run,) = runs_of(runs_root)
    assert read_run(run)["status"] == "killed"
    assert read_run(run)["exit_code"] == -signal.SIGTERM


def test_logs_follow_until_the_run_ends(git_project: Path, runs_root: Path) -> None:
    (git_project / "slow.py").write_text(
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.7)\n"
        "print('bye', flush=True)\n"
    )
    env = {**os.environ, "XP_HEARTBEAT_INTERVAL": "0.3"}
    run = subprocess.Popen([*XP, "run", "--", "python", "slow.py"], cwd=git_project, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(lambda: any("tick 0" in (p / rd.OUTPUT_LOG).read_text() for p in runs_of(runs_root)))
    (name,) = [p.name for p in runs_of(runs_root)]
    follow = subprocess.run([*XP, "logs", "-f", name], cwd=git_project, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    run.wait(timeout=60)
    assert follow.returncode == 0
    assert follow.stdout.splitlines() == ["tick 0", "tick 1", "tick 2", "bye"]


def test_run_from_a_subfolder_starts_in_the_same_folder_of_the_snapshot(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    sub = git_project / "scripts"
    sub.mkdir()
    (sub / "where.py").write_text("import os\nprint('CWD', os.path.basename(os.getcwd()))\n")
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "scripts")
    result = xp("run", "--", "python", "where.py", cwd=sub)
    assert result.returncode == 0, result.output
    assert "CWD scripts" in result.stdout
    (run,) = runs_of(runs_root)  # the runs root of the project, not of the subfolder
    assert read_run(run)["cwd"] == "scripts"


def test_a_huge_grid_is_counted_not_expanded_and_needs_yes(
    git_project: Path, runs_root: Path, xp: Callable[..., Result]
) -> None:
    values = ", ".join(str(i) for i in range(1000))
    exp = git_project / "experiments" / "toy" / "09_huge.xp.toml"
    exp.write_text(f'id = "huge99"\ncommand = "python train.py --lr {{lr}} --seed {{seed}}"\n'
                   f"[grid]\nlr = [{values}]\nseed = [{values}]\nx = [{values}]\n")  # fmt: skip
    dry = xp("run", str(exp), "--dry-run", cwd=git_project)
    assert dry.returncode == 0, dry.output
    assert dry.stdout.startswith("1,000,000,000 run(s) would run") and "the first 20:" in dry.stdout
    assert len([line for line in dry.stdout.splitlines() if "huge99_NNN_" in line]) == 20
    assert "needs --yes" in dry.stdout
    for command in ("run", "submit"):
        refused = xp(command, str(exp), cwd=git_project)
        assert refused.returncode == 2 and "Traceback" not in refused.output
        assert "1,000,000,000 runs (lr 1000 × seed 1000 × x 1000)" in refused.stderr
        assert "--yes" in refused.stderr
    assert runs_of(runs_root) == []
    small = {"XP_MAX_RUNS": "1"}
    refused = xp("run", EXP, cwd=git_project, env=small)
    assert refused.returncode == 2 and "XP_MAX_RUNS (1)" in refused.stderr
    assert xp("run", EXP, "--yes", cwd=git_project, env=small).returncode == 0
    assert len(runs_of(runs_root)) == 2
    bad = xp("run", EXP, cwd=git_project, env={"XP_MAX_RUNS": "lots"})
    assert bad.returncode == 2 and "XP_MAX_RUNS" in bad.stderr and "Traceback" not in bad.output


def test_config_values_from_xp_init_are_filterable_and_sortable(
    git_project: Path, xp: Callable[..., Result]
) -> None:
    """Values a program passes to `xp.init(config=...)` are found like params: by name
    or by dotted path, in --where, --sort and --columns; a typo names the closest."""
    (git_project / "cfg.py").write_text(
        "import sys, xpkit as xp\n"
        "p3, depth = int(sys.argv[1]), int(sys.argv[2])\n"
        "run = xp.init(config={'p3': p3, 'model': {'depth': depth, 'act': 'relu'}})\n"
        "run.log({'loss': 1.0 / depth})\n"
    )
    git(git_project, "add", "-A")
    git(git_project, "commit", "-qm", "cfg")
    for p3, depth in ((4, 2), (4, 8), (5, 4)):
        assert (
            xp("run", "--", "python", "cfg.py", str(p3), str(depth), cwd=git_project).returncode
            == 0
        )
    found = xp("ls", "--where", "p3=4", "--json", cwd=git_project)
    assert found.returncode == 0, found.output
    assert len(json.loads(found.stdout)) == 2
    deep = xp("ls", "--where", "config.model.depth>3", "--sort", "model.depth", "--columns",
              "name,model.depth,p3", cwd=git_project)  # fmt: skip
    assert deep.returncode == 0, deep.output
    rows = [line.split() for line in deep.stdout.splitlines()[1:]]
    assert [row[1:] for row in rows] == [["4", "5"], ["8", "4"]]
    typo = xp("ls", "--where", "model.dept=3", cwd=git_project)
    assert typo.returncode == 2 and "model.depth" in typo.stderr
