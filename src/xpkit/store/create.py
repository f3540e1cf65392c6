"""Create a run directory with everything known before the program starts.

Shared by `xp run`, the queue (`xp submit`) and standalone `xp.init()`: claim a trial,
create `<expid>_<trial>_<slug>` exclusively, write run.json, config.json, git.json,
git.diff and env.json. A run directory exists only once run.json is complete.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import warnings
from pathlib import Path

from xpkit import names
from xpkit.capture.env import capture_env
from xpkit.capture.git import SECRET_GLOBS, Snapshot, repo_root, take_snapshot
from xpkit.errors import StoreError
from xpkit.redact import redact_command, shown_run
from xpkit.settings import XP_CACHE_DIR, Settings
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any


# Plain classes, not dataclasses: `import dataclasses` (with inspect, ~8 ms) would be a
# tenth of every `xp run`'s and standalone `xp.init()`'s start-up.


class Provenance:
    """What every run of one sweep shares: code snapshot and host environment."""

    __slots__ = ("cwd", "encoded", "env", "project", "snapshot")

    def __init__(self, project: Path, snapshot: Snapshot | None, env: dict[str, Any],
                 cwd: str = ".") -> None:  # fmt: skip
        self.project = project
        self.snapshot = snapshot  # None with --no-git: no code provenance
        self.env = env
        self.cwd = cwd  # where the command starts, relative to the project root
        # git.json's, env.json's and git.diff's bytes, encoded once per provenance
        self.encoded: dict[str, bytes] = {}

    def encoded_file(self, name: str) -> bytes:
        content = self.encoded.get(name)
        if content is None:
            if name == rd.GIT_DIFF:
                content = (self.snapshot.diff if self.snapshot else "").encode()
            elif name == rd.ENV_JSON:
                content = rd.encode_json(self.env)
            else:
                content = rd.encode_json(self.snapshot.to_json() if self.snapshot
                                         else {"provenance": "none (--no-git)"})  # fmt: skip
            self.encoded[name] = content
        return content


class NewRun:
    """One run to create."""

    def __init__(
        self, expid: str, slug: str, command: str,
        argv: list[str] | None,  # set for `xp run -- CMD`: executed without a shell
        params: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,  # None: the program's config is its params
        experiment: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        gpus: int = 0,
        sweep: str | None = None,
        rerun_of: str | None = None,  # the run this one repeats (`xp rerun`)
        metrics_from: dict[str, Any] | None = None,  # stdout patterns, tensorboard
        resumable: bool = False,  # preempted: back to the queue as its next attempt
        stop_signal: str = "SIGTERM",  # what `stop` sends the process group first
        app: str | None = None,  # "hydra"/"lightning": it saves the config it composes
        priority: int = 0,
        labels: list[str] | None = None,
        requeue_of: str | None = None,  # the run this one replaces in the queue
        search: dict[str, Any] | None = None,  # a sweep trial: {"study": expid, "trial": key}
        env: dict[str, Any] | None = None,  # its Python environment (envspec), None: xp's
        # False for xp.init()'s runs: `run.artifacts` creates the folder when first used
        # (a folder costs a loop of short runs more than any file)
        artifacts_folder: bool = True,
    ) -> None:  # fmt: skip
        self.expid, self.slug, self.command, self.argv = expid, slug, command, argv
        self.params = params if params is not None else {}
        self.config = config
        self.experiment = experiment if experiment is not None else {}
        self.tags = tags if tags is not None else []
        self.gpus, self.sweep, self.rerun_of = gpus, sweep, rerun_of
        self.metrics_from = metrics_from if metrics_from is not None else {}
        self.resumable, self.stop_signal, self.app = resumable, stop_signal, app
        self.priority = priority
        self.labels = labels if labels is not None else []
        self.requeue_of, self.search, self.env = requeue_of, search, env
        self.artifacts_folder = artifacts_folder

    def __repr__(self) -> str:
        return f"NewRun({self.expid}_NNN_{self.slug}: {self.command!r})"


def user_name() -> str:
    """getpass.getuser(), which reads /etc/passwd when no LOGNAME/USER is set: asked
    once per process and user id."""
    key = (os.getuid(), *(os.environ.get(v) for v in ("LOGNAME", "USER", "LNAME", "USERNAME")))
    name = _user_names.get(key)
    if name is None:
        name = _user_names[key] = getpass.getuser()
    return name


_user_names: dict[tuple[Any, ...], str] = {}


def _uuid4_hex() -> str:
    """uuid.uuid4().hex without importing uuid (which imports platform: ~1 ms of every
    standalone xp.init())."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def ensure_runs_root(runs_root: Path) -> None:
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
        probe = runs_root / names.META_DIR
        probe.mkdir(exist_ok=True)
        if not os.access(probe, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise StoreError(
            f"runs root {runs_root} is not writable: {e.strerror}. "
            "Set `runs = ...` in xp.toml or XP_RUNS to a folder you can write."
        ) from e


def create_run(
    runs_root: Path, new: NewRun, provenance: Provenance, status: str = "queued",
    claim: dict[str, Any] | None = None,
) -> RunDir:  # fmt: skip
    """Claim a trial and write the run directory; returns it with status `status`.
    `claim` (a holder record) is written as the run's `.claim` before it appears."""
    return publish_run(runs_root, stage_run(runs_root, new, provenance, status, claim))


def stage_run(
    runs_root: Path, new: NewRun, provenance: Provenance, status: str = "queued",
    claim: dict[str, Any] | None = None,
) -> RunDir:  # fmt: skip
    """Write a complete run directory in the hidden staging folder; `publish_run`
    moves it into the runs root. A crash in between leaves nothing a user sees."""
    trial = names.allocate_trial(runs_root, new.expid)
    name = names.run_name(new.expid, trial, new.slug)
    snapshot = provenance.snapshot
    # Secret values of the command are masked in run.json (and so in every listing,
    # hook and page); the runner takes the real ones from .secrets.json.
    shown = shown_run(new.command, new.argv, new.params)
    redacted = shown.differs(new.command, new.argv)
    if shown.masked_params:
        warnings.warn(
            f"{', '.join(shown.masked_params)}: look like secrets; masked in run names, "
            "run.json and listings, but config.json (the program's input) keeps the value: "
            "pass credentials through the environment instead",
            stacklevel=2,
        )
    experiment = dict(new.experiment)
    if isinstance(experiment.get("command"), str):
        experiment["command"] = redact_command(experiment["command"])
    run = {
        "name": name,
        "experiment_id": new.expid,
        "trial": trial,
        "slug": new.slug,
        "experiment": experiment,
        "status": status,
        "command": shown.command,
        "argv": shown.argv,
        "redacted": redacted,
        "params": shown.params,
        "tags": new.tags,
        "gpus_requested": new.gpus,
        "project": str(provenance.project),
        "cwd": provenance.cwd,
        "snapshot": snapshot.snapshot if snapshot else None,
        "commit": snapshot.commit if snapshot else None,
        "sweep": new.sweep,
        "rerun_of": new.rerun_of,
        "metrics_from": new.metrics_from,
        "host": os.uname().nodename,
        "user": user_name(),
        "created": rd.now(),
        "started": rd.now() if status == "running" else None,  # xp.init(): running now
        "ended": None,
        "duration": None,
        "pid": os.getpid() if status == "running" else None,
        "exit_code": None,
        "peak_rss_bytes": None,
        "gpus": [],
        "reason": None,
        "id": _uuid4_hex(),  # XP_RUN_ID: the same in every attempt
        "attempt": 1,
        "attempts": [],
        "resumable": new.resumable,
        "stop_signal": new.stop_signal,
        "app": new.app,
        "priority": new.priority,
        "labels": new.labels,
        "requeue_of": new.requeue_of,
        "search": new.search,
        "env": new.env,
    }
    # Write everything into a hidden staging folder first, then rename: a crash
    # never leaves a run directory without its metadata.
    staging = staging_dir(runs_root) / name
    staging.parent.mkdir(parents=True, exist_ok=True)
    run_dir = RunDir.create(staging, run, new.artifacts_folder)
    if redacted:
        run_dir.write_secrets(new.command, new.argv)
    if claim is not None:  # recovery leaves a claim-less staged run alone for a while
        (staging / rd.CLAIM).write_text(json.dumps(claim) + "\n")
    config = new.params if new.config is None else new.config
    rd.write_new(staging / rd.CONFIG_JSON, rd.encode_json(config))
    for filename in (rd.GIT_JSON, rd.ENV_JSON, rd.GIT_DIFF):
        _write_shared(staging / filename, runs_root / name / filename,
                      provenance.encoded_file(filename))  # fmt: skip
    (staging / rd.OUTPUT_LOG).touch()
    (staging / rd.METRICS).touch()
    return run_dir


# file name -> (published path, inode, bytes) of the last copy this process wrote
_last_shared: dict[str, tuple[Path, int, bytes]] = {}


def _write_shared(staged: Path, published: Path, content: bytes) -> None:
    """git.json, env.json or git.diff into a staged run: a hard link to the last run's
    copy when that holds the same bytes and is still the same file (a run's env.json is
    replaced when its own environment is built): a file costs a loop of short runs
    ~0.1 ms to create, a link ~0.01 ms. Read-only, so that no editor changes every
    run's copy at once (vim writes a linked file in place). Not fsynced: what a power
    loss may leave empty every reader takes as missing, and git does not fsync the
    snapshot's objects either."""
    name = staged.name
    last = _last_shared.get(name)
    try:
        if last is None or last[2] != content or os.lstat(last[0]).st_ino != last[1]:
            raise FileNotFoundError
        os.link(last[0], staged)  # EMLINK past ~65,000 links: a new copy
        inode = last[1]
    except OSError:
        rd.write_new(staged, content, durable=False, mode=0o444)
        inode = os.lstat(staged).st_ino
    _last_shared[name] = (published, inode, content)


def staging_dir(runs_root: Path) -> Path:
    return runs_root / names.META_DIR / "staging"


def publish_run(runs_root: Path, staged: RunDir) -> RunDir:
    """Move a staged run into the runs root, where everyone sees it."""
    try:
        os.rename(staged.path, runs_root / staged.name)
    except OSError as e:
        raise StoreError(f"cannot move new run {staged.name} into {runs_root}: {e.strerror}") from e
    return RunDir(runs_root / staged.name, staged.created)


def own_folders(settings: Settings) -> tuple[Path, ...]:
    """xpkit's folders, never part of a snapshot even inside the project and not ignored:
    the runs root, the work folder and XP_CACHE_DIR (its index copies change every run)."""
    return (settings.runs, settings.workdir, XP_CACHE_DIR.get())


def capture_provenance(settings: Settings, no_git: bool) -> Provenance:
    """Snapshot the code (unless --no-git) and capture the host, once per sweep."""
    cwd = Path.cwd().resolve()
    if no_git:
        snapshot = None
        project = settings.root
    else:
        project = repo_root(settings.root)
        snapshot = take_snapshot(project, exclude=own_folders(settings),
                                 secret_globs=SECRET_GLOBS + settings.secret_globs)  # fmt: skip
        if snapshot.kept_out:
            listed = ", ".join(snapshot.kept_out[:8]) + (" …" if len(snapshot.kept_out) > 8 else "")
            warnings.warn(
                f"kept out of the snapshot, its diff and bundle because they look like secrets: "
                f"{listed}; runs on this machine get them linked into their worktree "
                "(more patterns: secret_globs in xp.toml)",
                stacklevel=2,
            )
        if snapshot.tracked_secrets:
            warnings.warn(
                f"{', '.join(snapshot.tracked_secrets[:8])} look like secrets and are tracked by "
                "git: they are in your history (so in what you push and in xpkit's bundles); "
                "`git rm --cached` them "
                "and add them to .gitignore",
                stacklevel=2,
            )
        if snapshot.not_inlined:
            listed = ", ".join(f["path"] for f in snapshot.not_inlined[:5])
            warnings.warn(
                f"{len(snapshot.not_inlined)} new file(s) are in the snapshot but only listed "
                f"in git.diff (binary, over 1 MiB, or beyond 8 MiB of new files): {listed}",
                stacklevel=2,
            )
    try:
        rel = str(cwd.relative_to(project))
    except ValueError:
        rel = "."
    return Provenance(project=project, snapshot=snapshot, env=capture_env(), cwd=rel)


class _Reused:
    """The last provenance of one project in this process, and what would make it stale."""

    __slots__ = ("packages", "provenance", "watch")

    def __init__(self, watch: Any, provenance: Provenance, packages: tuple[Any, ...]) -> None:
        self.watch = watch  # a capture.treewatch.TreeWatch once the process makes a second run
        self.provenance = provenance
        self.packages = packages


_reused: dict[tuple[Path, bool, Path], _Reused] = {}


def reuse_provenance(settings: Settings, no_git: bool) -> Provenance:
    """`capture_provenance`, taken again only when something it depends on changed: a
    file of the working tree or git's HEAD/index (inotify, read at this call), the
    interpreter's packages (its sys.path folders' mtimes) or the current folder. For
    many runs in one process (a notebook loop, an in-process search; the watch starts
    at the second run): a new snapshot costs ~20 ms, a reused one nothing. Environment
    variables are captured afresh."""
    from xpkit.capture.env import collect_env_vars

    key = (settings.root, no_git, Path.cwd())
    packages = _packages_stamp()
    cached = _reused.get(key)
    if cached is None:  # most processes make one run: they pay for no watch
        provenance = capture_provenance(settings, no_git)
        _reused[key] = _Reused(None, provenance, packages)
        return provenance
    watch = cached.watch
    if watch is not None and cached.packages == packages and not watch.changed():
        variables = collect_env_vars()
        if variables is not cached.provenance.env.get("env"):
            env = {**cached.provenance.env, "env": variables}
            cached.provenance = Provenance(cached.provenance.project,
                                           cached.provenance.snapshot, env,
                                           cached.provenance.cwd)  # fmt: skip
        return cached.provenance
    if watch is not None:
        watch.close()
    from xpkit.capture.treewatch import TreeWatch  # here: it imports ctypes (~2 ms)

    # A second run in this process: watch from now on. The watch starts before the
    # snapshot, so an edit made while it is taken counts as a change.
    watch = TreeWatch(settings.root, skip=own_folders(settings))
    provenance = capture_provenance(settings, no_git)
    _reused[key] = _Reused(watch, provenance, packages)
    return provenance


def _packages_stamp() -> tuple[Any, ...]:
    stamp: list[tuple[str, int | None]] = []
    for entry in sys.path:
        try:
            stamp.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            stamp.append((entry, None))
    return tuple(stamp)
