"""One way to execute a prepared run, for `xp run`, the local backend and the Ray task:
the code from the snapshot (a worktree shared per snapshot), the environment of the
machine it executes on, CUDA_VISIBLE_DEVICES, the runner."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from xpkit.capture.env import capture_env
from xpkit.capture.git import fetch_bundle, git, repo_root, snapshot_exists
from xpkit.errors import GitError, RunError
from xpkit.execute.runner import Outcome, Runner
from xpkit.execute.workspace import Workspace
from xpkit.names import META_DIR
from xpkit.settings import XP_CACHE_DIR, Settings
from xpkit.store import rundir as rd
from xpkit.store.locks import exclusive_lock
from xpkit.store.rundir import RunDir
from xpkit.values import path_digest

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any


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


def code_repo(settings: Settings, sha: str) -> Path:
    """A repository holding snapshot `sha`: this project's, or a cache repo fed from
    the snapshot's bundle in the runs root (machines without the project)."""
    try:
        project: Path | None = repo_root(settings.root)
    except GitError:
        project = None
    if project is not None and snapshot_exists(project, sha):
        return project
    digest = path_digest(settings.runs)
    repos = XP_CACHE_DIR.get() / "repos"
    if project is None:
        return repo_with_snapshot(repos / f"{digest}.git", bundle_path(settings.runs, sha), sha)
    repos.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(repos / f"{digest}.fetch.lock"):  # a sweep's jobs start together
        if not snapshot_exists(project, sha):
            fetch_bundle(project, bundle_path(settings.runs, sha), sha)
    return project


def snapshot_reader(
    settings: Settings, info: dict[str, Any]
) -> tuple[Callable[[str], str | None], str]:
    """Read files of the run's code without a worktree: from its snapshot in git, or
    (--no-git) from the project folder."""
    from xpkit.execute.envs import folder_reader

    sha = info.get("snapshot")
    if not sha:
        project = Path(info.get("project") or settings.root)
        return folder_reader(project), f"the project {project}"
    repo = code_repo(settings, sha)

    def read(name: str) -> str | None:
        shown = subprocess.run(["git", "show", f"{sha}:{name}"], cwd=repo, capture_output=True,
                               check=False, timeout=60)  # fmt: skip
        return shown.stdout.decode("utf-8", "replace") if shown.returncode == 0 else None

    return read, f"the run's snapshot {sha[:12]}"


@contextmanager
def snapshot_tree(workspace: Workspace, sha: str, user: str) -> Iterator[Path]:
    """A worktree of snapshot `sha`, held for `user` while the block runs."""
    tree = workspace.acquire(sha, user)
    try:
        yield tree
    finally:
        workspace.release(tree, user)


def project_tree(settings: Settings, run_dir: RunDir, user: str) -> AbstractContextManager[Path]:
    """Where a queued run's code is on this machine: its snapshot's worktree, or (--no-git)
    the project as it is now."""
    info = run_dir.read_run()
    sha = info.get("snapshot")
    if not sha:
        return nullcontext(Path(info.get("project") or settings.root))
    workspace = Workspace(code_repo(settings, sha), settings.workdir, settings.link,
                          *kept_out(run_dir, info))  # fmt: skip
    return snapshot_tree(workspace, sha, user)


def kept_out(run_dir: RunDir, info: dict[str, Any]) -> tuple[tuple[str, ...], Path | None]:
    """The secret-looking files the run's snapshot left out, and where they are."""
    git_info = run_dir.read_optional(rd.GIT_JSON, {}) or {}
    names = tuple(p for p in git_info.get("kept_out") or () if isinstance(p, str))
    return names, Path(info["project"]) if info.get("project") else None


def execute_prepared(
    run_dir: RunDir,
    tree: AbstractContextManager[Path] | Callable[[], AbstractContextManager[Path]],
    *,
    gpus: list[int] | None,
    echo: bool = False,
    capture: bool = True,
    on_runner: Callable[[Runner], None] | None = None,
    raise_errors: bool = False,
    on_started: Callable[[], None] | None = None,
) -> Outcome:
    """Execute a prepared run in `tree` (its code). `gpus` None leaves CUDA_VISIBLE_DEVICES
    as it is; a list sets it ([] hides every GPU). `capture` rewrites env.json for the
    machine it executes on. Unless `raise_errors`, a failure to start is recorded in
    the run and returned as `failed`, never raised: one bad run must not stop a worker."""
    visible = {} if gpus is None else {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
    runner: Runner | None = None
    try:
        if capture:
            env = capture_env()
            env.get("env", {}).get("variables", {}).update(visible)
            run_dir.write_json(rd.ENV_JSON, env)
        with tree() if callable(tree) else tree as root:
            info = run_dir.read_run()
            extra = dict(visible)
            if info.get("env"):
                extra.update(_enter_env(run_dir, info, root))
            cwd = root / (info.get("cwd") or ".")
            runner = Runner(run_dir, cwd if cwd.is_dir() else root, echo=echo,
                            on_started=on_started)  # fmt: skip
            if on_runner is not None:
                on_runner(runner)
            return runner.execute(extra_env=extra)
    except RunError:
        if raise_errors:
            raise
        return Outcome("failed", None)  # the runner recorded why
    except Exception as e:  # bundle, workspace, disk: record it
        if raise_errors:
            raise
        record_failure(run_dir, f"{type(e).__name__}: {e}")
        return Outcome("failed", None)


def _enter_env(run_dir: RunDir, info: dict[str, Any], root: Path) -> dict[str, str]:
    """The run's Python environment (built here first if needed): the child's variables.
    What the build says goes to stderr and the run's output.log; a build that fails
    fails the run with uv's words."""
    from xpkit.execute import envs

    def say(text: str) -> None:
        print(f"xp: {text}", file=sys.stderr, flush=True)
        with open(run_dir.file(rd.OUTPUT_LOG), "a", encoding="utf-8") as log:
            log.write(f"xp: {text}\n")

    try:
        return envs.enter(run_dir, info, root, say=say)
    except RunError as e:
        record_failure(run_dir, str(e))
        raise


def record_failure(run_dir: RunDir, reason: str) -> None:
    info: dict[str, Any] = run_dir.read_optional(rd.RUN_JSON, {}) or {}
    if info.get("status") in rd.ENDED:
        return
    try:
        run_dir.update_run(status="failed", ended=rd.now(), reason=reason)
    except Exception:
        pass
