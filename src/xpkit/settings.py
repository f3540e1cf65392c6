"""Project settings (xp.toml or [tool.xp] in pyproject.toml) and every XP_* env var.

Nothing else in xpkit reads `os.environ` for its own variables: each one is declared
here once, with its type and default.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from xpkit.errors import ConfigError

TYPE_CHECKING = False  # typing is not imported at run time: every run imports this module
if TYPE_CHECKING:
    from typing import Any, Generic, TypeVar

    from xpkit.envspec import EnvRequest

    T = TypeVar("T")
else:
    T = None

    class Generic:
        """Stands in for typing.Generic at run time: EnvVar[T] is for the type checker."""

        def __class_getitem__(cls, _item: object) -> type:
            return cls


class EnvVar(Generic[T]):
    """One environment variable: its name, how to parse it, and its default."""

    __slots__ = ("default", "help", "name", "parse")

    def __init__(self, name: str, parse: Callable[[str], T], default: T, help: str = "") -> None:
        self.name, self.parse, self.default, self.help = name, parse, default, help

    def get(self) -> T:
        raw = os.environ.get(self.name)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError as e:
            raise ConfigError(
                f"environment variable {self.name}={raw!r} is invalid: {e}. {self.help}"
            ) from e

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name))


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _choice(*valid: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in valid:
            raise ValueError(f"valid values are {', '.join(valid)}")
        return raw

    return parse


# Set by the runner for the program it starts; read by `xp.init()` to attach.
XP_RUN_DIR = EnvVar("XP_RUN_DIR", _path, None, "The directory of the current run.")
XP_RUN_NAME = EnvVar("XP_RUN_NAME", str, "", "The name of the current run.")
XP_EXPERIMENT_ID = EnvVar("XP_EXPERIMENT_ID", str, "", "The experiment ID of the current run.")
XP_TRIAL = EnvVar("XP_TRIAL", int, 0, "The trial number of the current run.")
XP_CONFIG = EnvVar("XP_CONFIG", _path, None, "The resolved config.json of the current run.")
XP_RUN_ID = EnvVar("XP_RUN_ID", str, "", "The run's stable ID, the same in each of its attempts.")
XP_ATTEMPT = EnvVar("XP_ATTEMPT", int, 1, "Which attempt of the run this is: 1, 2, ...")
XP_CKPT_DIR = EnvVar(
    "XP_CKPT_DIR", _path, None, "A resumable run's checkpoint folder, kept across attempts."
)
XP_STOP_SIGNAL = EnvVar(
    "XP_STOP_SIGNAL", str, "SIGTERM", "The signal that asks the current run to stop (resumable)."
)
XP_RUNNER_PID = EnvVar("XP_RUNNER_PID", int, 0, "PID of the process supervising the current run.")
# Overrides and tuning.
XP_RUNS = EnvVar("XP_RUNS", _path, None, "Overrides the runs root of xp.toml.")
XP_CACHE_DIR = EnvVar(
    "XP_CACHE_DIR", _path, Path("~/.cache/xpkit").expanduser(), "Local cache (run index)."
)
XP_ENVS_DIR = EnvVar(
    "XP_ENVS_DIR",
    _path,
    None,
    "Where this machine keeps the runs' Python environments (default <XP_CACHE_DIR>/envs); "
    "a local disk, with uv's cache beside them.",
)
XP_HEARTBEAT_INTERVAL = EnvVar(
    "XP_HEARTBEAT_INTERVAL", _positive_float, 5.0, "Seconds between heartbeats of a run."
)
XP_HEARTBEAT_TIMEOUT = EnvVar(
    "XP_HEARTBEAT_TIMEOUT",
    _positive_float,
    60.0,
    "Seconds without heartbeat after which a running run shows as lost.",
)
XP_GONE_WAIT = EnvVar(
    "XP_GONE_WAIT",
    _positive_float,
    120.0,
    "Seconds a run that ended waits for its vanished folder before keeping its end locally.",
)
XP_MAX_RUNS = EnvVar(
    "XP_MAX_RUNS", _positive_int, 1000, "Runs one `xp run`/`xp submit` creates without --yes."
)
XP_KILL_GRACE = EnvVar(
    "XP_KILL_GRACE", _positive_float, 10.0, "Seconds between SIGINT, SIGTERM and SIGKILL."
)
XP_FLUSH_INTERVAL = EnvVar(
    "XP_FLUSH_INTERVAL", _positive_float, 0.25, "Max seconds a logged metric stays in memory."
)
XP_GPU_PROBE = EnvVar(
    "XP_GPU_PROBE",
    _choice("auto", "nvml", "nvidia-smi", "none"),
    "auto",
    "How GPUs are found: auto (NVML, then nvidia-smi), nvml, nvidia-smi or none.",
)

XP_FAKE_GPUS = EnvVar(
    "XP_FAKE_GPUS",
    _path,
    None,
    "JSON file describing fake GPUs for `python -m xpkit.capture.fake_smi`.",
)
XP_GPU_FREE_MIB = EnvVar(
    "XP_GPU_FREE_MIB", int, 1024, "A GPU using at least this much memory (MiB) is not free."
)
XP_GPU_GRACE = EnvVar(
    "XP_GPU_GRACE",
    float,
    30.0,
    "Seconds after handing a GPU out during which this machine's workers hand it out no more.",
)
XP_WORKER_POLL = EnvVar(
    "XP_WORKER_POLL", _positive_float, 0.25, "Seconds between a worker's looks at the queue."
)

XP_WATCH_MIN_FILES = EnvVar(
    "XP_WATCH_MIN_FILES",
    int,
    20_000,
    "Projects with this many tracked files get a watcher that tells snapshots what changed.",
)
XP_WATCH_IDLE = EnvVar(
    "XP_WATCH_IDLE", _positive_float, 3600.0, "Seconds a project's watcher waits for a question."
)
XP_TOOL_TIMEOUT = EnvVar(
    "XP_TOOL_TIMEOUT",
    _positive_float,
    600.0,
    "Seconds a git or rsync command may take before xp stops it with an error.",
)
XP_RAY_TOKEN = EnvVar(
    "XP_RAY_TOKEN", str, "", "Token of the Ray cluster (printed by `xp cluster head`)."
)
XP_UI_TOKEN = EnvVar(
    "XP_UI_TOKEN", str, "", "A fixed token for `xp ui` (default: a random one per start)."
)

CONFIG_FILE = "xp.toml"
_KNOWN_KEYS = {
    "runs": "folder holding all run directories (default 'runs')",
    "workdir": "folder for snapshot worktrees (default ~/.cache/xpkit/worktrees/<project>)",
    "link": "list of ignored folders symlinked into every snapshot worktree",
    "secret_globs": "more file globs kept out of snapshots as secrets (besides .env*, *.pem, …)",
    "hooks": "notification hooks, one table [hooks.<name>] each (see README)",
    "env": 'the Python environment runs execute in: "requirements.txt", "uv.lock", '
    '"pyproject.toml" or a table (see README, Environments)',
}


class Settings:
    """Resolved settings of one project. A plain class, not a dataclass: every run's
    `import xpkit` reads this module, and `dataclasses` alone would add ~8 ms to it."""

    __slots__ = ("env", "hooks", "link", "root", "runs", "secret_globs", "source", "workdir")

    def __init__(
        self,
        root: Path,
        runs: Path,
        workdir: Path,
        link: tuple[str, ...] = (),
        secret_globs: tuple[str, ...] = (),  # added to capture.git.SECRET_GLOBS
        source: Path | None = None,
        hooks: dict[str, Any] | None = None,  # raw; xpkit.hooks parses it
        env: EnvRequest | None = None,  # envspec.resolve checks it against the project
    ) -> None:
        self.root, self.runs, self.workdir = root, runs, workdir
        self.link, self.secret_globs, self.source = link, secret_globs, source
        self.hooks: dict[str, Any] = hooks or {}
        self.env = env

    def __repr__(self) -> str:
        return f"Settings(root={self.root}, runs={self.runs})"


def default_workdir(root: Path) -> Path:
    # Outside the project on purpose: a worktree inside it would be snapshotted as an
    # embedded repository unless ignored, and must live on a local disk anyway.
    from xpkit.values import path_digest

    digest = path_digest(root, 8)
    return XP_CACHE_DIR.get() / "worktrees" / f"{root.name}-{digest}"


def find_project_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding xp.toml, [tool.xp] or .git."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file() or _has_tool_xp(folder / "pyproject.toml"):
            return folder
        if (folder / ".git").exists():
            return folder
    return None


def _has_tool_xp(pyproject: Path) -> bool:
    if not pyproject.is_file():
        return False
    try:
        return "xp" in read_toml_cached(pyproject).get("tool", {})
    except ConfigError:
        return False


def line_of(source: str, key: str) -> str:
    """ ":LINE" of the first `key = ...` in a TOML source, or "" when not found."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=", re.MULTILINE)
    match = pattern.search(source)
    if not match:
        return ""
    return f":{source.count(chr(10), 0, match.start()) + 1}"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text ({e.reason})") from e
    return read_toml_text(text, str(path))


# A file modified this recently is not cached: a second edit within the same tick of
# its timestamp, with the same size, would not change the cache's key (git's racy-clean
# rule). Seconds.
TOML_CACHE_SETTLED = 2.0


def read_toml_cached(path: Path) -> dict[str, Any]:
    """read_toml, through a cache of the parse in XP_CACHE_DIR/toml: every `xp run` and
    `xp.init()` reads xp.toml, and importing tomllib (with typing and datetime) would be
    ~8 ms of their start-up. The cache is keyed by the file's path, size, inode and
    modification and change times; a file that changed within TOML_CACHE_SETTLED
    seconds, or whose values JSON cannot hold (dates), is parsed each time."""
    import json

    from xpkit.values import sha1

    try:
        st = path.stat()
    except OSError:
        return read_toml(path)  # says why it cannot be read
    key = [str(path), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
    cache = XP_CACHE_DIR.get() / "toml" / f"{sha1(str(path).encode()).hexdigest()}.json"
    try:
        kept = json.loads(cache.read_bytes())
        if kept["key"] == key and isinstance(kept["data"], dict):
            return kept["data"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    data = read_toml(path)
    if st.st_mtime_ns / 1e9 < time.time() - TOML_CACHE_SETTLED:
        try:
            text = json.dumps({"key": key, "data": data})
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(f".{cache.name}.{os.getpid()}")
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, cache)
        except (OSError, TypeError, ValueError):
            pass  # a read-only cache, or a date: parsed again next time
    return data


def read_toml_text(text: str, where: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: invalid TOML: {e}") from e


def _check_folder(path: Path, what: str, where: str) -> None:
    """A folder xpkit will create must not be a file, nor lie below one."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                below = "" if folder == path else f" ({folder} is a file)"
                raise ConfigError(f"{what} {path} is not a folder{below}: give a folder in {where}")
            return


def load_settings(start: Path | None = None) -> Settings:
    """Settings of the project containing `start` (default: the current folder).

    Without xp.toml or [tool.xp] the defaults apply, rooted at the git top level.
    """
    start = Path.cwd() if start is None else start
    root = find_project_root(start) or start.resolve()
    raw: dict[str, Any] = {}
    source: Path | None = None
    if (root / CONFIG_FILE).is_file():
        source = root / CONFIG_FILE
        raw = read_toml_cached(source)
    elif _has_tool_xp(root / "pyproject.toml"):
        source = root / "pyproject.toml"
        raw = read_toml_cached(source)["tool"]["xp"]
    where = str(source) if source else "defaults"
    unknown = sorted(set(raw) - set(_KNOWN_KEYS))
    if unknown:
        valid = "; ".join(f"{k}: {v}" for k, v in _KNOWN_KEYS.items())
        raise ConfigError(f"{where}: unknown setting {', '.join(unknown)}. Valid settings: {valid}")
    for key in ("runs", "workdir"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{where}: '{key}' must be a string path, got {raw[key]!r}")
    link = raw.get("link", [])
    if not isinstance(link, list) or not all(isinstance(x, str) for x in link):
        raise ConfigError(f"{where}: 'link' must be a list of folder names, got {link!r}")
    secret_globs = raw.get("secret_globs", [])
    if not isinstance(secret_globs, list) or not all(
        isinstance(x, str) and x.strip() for x in secret_globs
    ):
        raise ConfigError(
            f"{where}: 'secret_globs' must be a list of file globs like \"*.secret\", "
            f"got {secret_globs!r}"
        )
    if "runs" in raw and raw["runs"].strip() in ("", ".", "./"):
        raise ConfigError(
            f"{where}: 'runs' = {raw['runs']!r} would put run directories in the project root, "
            'where every snapshot would take them in; give a folder, e.g. runs = "runs"'
        )
    env = None
    if "env" in raw:
        from xpkit.envspec import EnvRequest, parse_env

        text = source.read_text(encoding="utf-8", errors="replace") if source else ""
        parsed = parse_env(raw["env"], lambda m: ConfigError(f"{where}{line_of(text, 'env')}: {m}"))
        env = parsed if isinstance(parsed, EnvRequest) else None
    runs_override = XP_RUNS.get()
    runs = runs_override if runs_override else Path(raw.get("runs", "runs")).expanduser()
    workdir = Path(raw["workdir"]).expanduser() if "workdir" in raw else default_workdir(root)
    runs = (root / runs).resolve() if not runs.is_absolute() else runs
    _check_folder(runs, "runs root", "runs = ... in xp.toml or XP_RUNS" if not runs_override
                  else "XP_RUNS")  # fmt: skip
    return Settings(
        root=root,
        runs=runs,
        workdir=(root / workdir).resolve() if not workdir.is_absolute() else workdir,
        link=tuple(link),
        secret_globs=tuple(secret_globs),
        source=source,
        hooks=raw.get("hooks", {}) if isinstance(raw.get("hooks", {}), dict) else {},
        env=env,
    )
