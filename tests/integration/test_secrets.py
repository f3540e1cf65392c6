"""Secrets stay where they are: not in run names, run.json, listings, hook payloads,
snapshots, diffs, bundles, backups or env.json; the program still gets them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, git, read_run, runs_of, wait_for
from xpkit.store import rundir as rd

pytestmark = pytest.mark.integration

KEY = "sk-live-123"
GH_TOKEN = "ghp_" + "A1b2C3d4E5" * 4  # the shape of a GitHub token
DOTENV = "OPENAI_API_KEY=sk-proj-" + "q" * 30 + "\n"
LEAK_PY = textwrap.dedent(
    """\
    import os, sys
    print("ARGS", " ".join(sys.argv[1:]))
    print("DOTENV", open(".env").read().strip() if os.path.exists(".env") else "missing")
    sys.exit(int(os.environ.get("LEAK_EXIT", "0")))
    """
)


@pytest.fixture
def project(git_project: Path) -> Path:
    (git_project / "leak.py").write_text(LEAK_PY)
    git(git_project, "add", "leak.py")
    git(git_project, "commit", "-qm", "leak")
    (git_project / ".env").write_text(DOTENV)  # untracked, not ignored
    return git_project


def _everything_recorded(runs_root: Path) -> str:
    """Every byte xpkit wrote under the runs root, except .secrets.json and the
    program's own output (which printed the values on purpose)."""
    texts = []
    for path in sorted(runs_root.rglob("*")):
        if path.is_file() and path.name not in (rd.SECRETS, rd.OUTPUT_LOG):
            texts.append(f"{path.relative_to(runs_root)}\n")
            if not path.name.endswith(".bundle"):
                texts.append(path.read_text(errors="replace"))
    return "".join(texts)


def test_a_secret_option_is_masked_everywhere_but_reaches_the_program(
    project: Path, xp: Callable[..., Result], tmp_path: Path
) -> None:
    payloads = tmp_path / "payloads.jsonl"
    (project / "xp.toml").write_text(
        f'runs = "runs"\n[hooks.cmd]\ntype = "command"\ncommand = "cat >> {payloads}"\n'
    )
    result = xp("run", "--", "python", "leak.py", "--api-key", KEY, f"--token={GH_TOKEN}",
                cwd=project, env={"LEAK_EXIT": "1"})  # fmt: skip
    assert result.returncode == 1, result.output
    (run,) = runs_of(project / "runs")
    assert KEY not in run.name and "ghp" not in run.name
    assert f"ARGS --api-key {KEY} --token={GH_TOKEN}" in (run / rd.OUTPUT_LOG).read_text()
    info = read_run(run)
    assert info["command"] == "python leak.py --api-key '***' '--token=***'"
    assert info["argv"][-2:] == ["***", "--token=***"] and info["redacted"] is True
    assert stat.S_IMODE((run / rd.SECRETS).stat().st_mode) == 0o600
    wait_for(lambda: payloads.exists() and "run.failed" in payloads.read_text())
    assert KEY not in payloads.read_text() and GH_TOKEN not in payloads.read_text()
    for listing in (xp("ls", cwd=project), xp("show", run.name, cwd=project)):
        assert listing.returncode == 0 and KEY not in listing.output
    assert KEY not in _everything_recorded(project / "runs")
    assert GH_TOKEN not in _everything_recorded(project / "runs")
    rerun = xp("rerun", run.name, cwd=project)  # the real values are kept for it
    assert f"ARGS --api-key {KEY}" in rerun.stdout


def test_a_queued_run_gets_its_secret_and_a_backup_never_has_it(
    project: Path, xp: Callable[..., Result], tmp_path: Path
) -> None:
    submitted = xp("submit", "--", "python", "leak.py", "--password", "hunter2", cwd=project)
    assert submitted.returncode == 0, submitted.output
    assert xp("worker", "--once", cwd=project).returncode == 0
    (run,) = runs_of(project / "runs")
    assert read_run(run)["status"] == "finished"
    assert "ARGS --password hunter2" in (run / rd.OUTPUT_LOG).read_text()
    assert "hunter2" not in run.name and "hunter2" not in (run / rd.RUN_JSON).read_text()
    backup = xp("backup", str(tmp_path / "backups"), cwd=project)
    assert backup.returncode == 0, backup.output
    assert not list((tmp_path / "backups").rglob(rd.SECRETS))
    # A run whose secrets did not come along cannot silently run with '***'.
    (run / rd.SECRETS).unlink()
    rerun = xp("rerun", run.name, cwd=project)
    assert rerun.returncode != 0 and "Traceback" not in rerun.output
    assert ".secrets.json" in rerun.output and "masked" in rerun.output


def test_grid_values_that_look_secret_stay_out_of_run_names(
    project: Path, xp: Callable[..., Result]
) -> None:
    (project / "experiments" / "toy" / "02_keys.xp.toml").write_text(textwrap.dedent(f"""\
        id = "key123"
        command = "python leak.py --lr {{lr}} --k {{api_key}} --other {{other}}"
        [grid]
        lr = [0.1]
        api_key = ["abc", "def"]
        other = ["{GH_TOKEN}"]
        """))  # fmt: skip
    result = xp("run", "experiments/toy/02_keys.xp.toml", cwd=project)
    assert result.returncode == 0, result.output
    runs = runs_of(project / "runs")
    assert [r.name for r in runs] == ["key123_001_keys", "key123_002_keys"]
    for run in runs:
        assert GH_TOKEN not in (run / rd.RUN_JSON).read_text()
        assert f"--other {GH_TOKEN}" in (run / rd.OUTPUT_LOG).read_text()


def test_secret_files_never_enter_snapshot_diff_or_bundle(
    project: Path, xp: Callable[..., Result], tmp_path: Path
) -> None:
    (project / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n")
    (project / "config").mkdir()
    (project / "config" / "db.secret").write_text("password=hunter2\n")
    (project / "xp.toml").write_text('runs = "runs"\nsecret_globs = ["*.secret"]\n')
    (project / "id_rsa").write_text("PRIVATE RSA KEY\n")
    git(project, "add", "-f", "id_rsa")  # tracked by mistake
    git(project, "commit", "-qm", "oops")
    (project / "id_rsa").write_text("PRIVATE RSA KEY, rotated\n")
    (project / "notes.txt").write_text("a real change\n")
    result = xp("submit", "--", "python", "leak.py", cwd=project)
    assert result.returncode == 0, result.output
    assert result.stderr.count("kept out of the snapshot") == 1
    for name in (".env", "deploy.pem", "config/db.secret", "id_rsa"):
        assert name in result.stderr
    assert "tracked by git" in result.stderr and "git rm --cached" in result.stderr
    (run,) = runs_of(project / "runs")
    sha = read_run(run)["snapshot"]
    tree = git(project, "ls-tree", "-r", "--name-only", sha).split()
    assert "notes.txt" in tree and "leak.py" in tree
    assert not {".env", "deploy.pem", "config/db.secret", "id_rsa"} & set(tree)
    diff = (run / rd.GIT_DIFF).read_text()
    assert "notes.txt" in diff and "PRIVATE" not in diff and "hunter2" not in diff
    assert "sk-proj" not in diff
    assert json.loads((run / rd.GIT_JSON).read_text())["kept_out"] == sorted(
        [".env", "config/db.secret", "deploy.pem", "id_rsa"]
    )
    bundle = next((project / "runs" / ".xp" / "bundles").glob("*.bundle"))
    clone = tmp_path / "from-bundle"
    subprocess.run(["git", "clone", "-q", str(bundle), str(clone)], check=True,
                   capture_output=True)  # fmt: skip
    git(clone, "fetch", "-q", str(bundle), f"refs/xp/snapshots/{sha}:refs/snap")
    assert not {".env", "deploy.pem", "config/db.secret"} & set(
        git(clone, "ls-tree", "-r", "--name-only", "refs/snap").split()
    )
    # The run still finds them where they are: linked into its worktree.
    assert xp("worker", "--once", cwd=project).returncode == 0
    assert f"DOTENV {DOTENV.strip()}" in (run / rd.OUTPUT_LOG).read_text()


def test_environment_is_redacted_by_name_and_by_value(
    project: Path, xp: Callable[..., Result]
) -> None:
    env = {
        "DATABASE_URL": "postgres://alice:pw1@db:5432/x",
        "HTTPS_PROXY": "http://bob:pw2@proxy:3128",
        "SENTRY_DSN": "https://abc@sentry.example/1",
        "TEAM_WEBHOOK_URL": "https://hooks.example/T0",
        "SMTP_PASS": "pw3",
        "INNOCENT": GH_TOKEN,
        "AWS_ID": "AKIA" + "ABCDEFGHIJKLMNOP",
        "LR_SCHEDULE": "cosine",
    }
    assert xp("run", "--", "python", "-c", "pass", cwd=project, env=env).returncode == 0
    (run,) = runs_of(project / "runs")
    variables = json.loads((run / rd.ENV_JSON).read_text())["env"]["variables"]
    text = json.dumps(variables)
    for secret in ("pw1", "pw2", "pw3", "sentry.example", "hooks.example", GH_TOKEN, "AKIA"):
        assert secret not in text, secret
    assert variables["HTTPS_PROXY"] == "http://bob:***@proxy:3128"
    assert variables["LR_SCHEDULE"] == "cosine"


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ('secret_globs = "*.secret"', "'secret_globs' must be a list of file globs"),
        ('runs = ""', "would put run directories in the project root"),
        ('runs = "."', "would put run directories in the project root"),
        ('runs = "version.txt"', "runs root"),
        ('runs = "version.txt/runs"', "is a file"),
    ],
    ids=["globs-not-a-list", "runs-empty", "runs-dot", "runs-a-file", "runs-below-a-file"],
)
def test_bad_settings_are_refused(
    project: Path, xp: Callable[..., Result], setting: str, fragment: str
) -> None:
    (project / "xp.toml").write_text(setting + "\n")
    result = xp("run", "--", "python", "-c", "pass", cwd=project)
    assert result.returncode == 2 and fragment in result.stderr, result.output
    assert "Traceback" not in result.output
    assert not (project / "runs").exists() and not any(
        p.name.startswith(("01", "2")) for p in project.iterdir() if p.is_dir()
    )
    assert os.listdir(project)  # nothing of the project was touched
