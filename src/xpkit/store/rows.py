"""Index rows: what the run index (store/index.py) keeps of one run folder, and reading
them from run folders (many at once in a process per core)."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.errors import StoreError
from xpkit.forked import map_jobs
from xpkit.store import rundir as rd

COLUMNS = [
    "name",
    "experiment_id",
    "trial",
    "status",
    "experiment",
    "created",
    "started",
    "ended",
    "duration",
    "host",
    "exit_code",
    "params",
    "summary",
    "summary_keys",
    "tags",
    "command",
    "snapshot",
    "git_commit",
    "gpus",
    "config",
    "dir_mtime",
    "error",
]


ROW_FIELDS = COLUMNS[:-2]  # everything but dir_mtime and error
_JSON_FIELDS = ("params", "summary", "summary_keys", "tags", "gpus", "config")
# RunRow keeps JSON columns as text under these names and decodes them on first use.
_ATTRIBUTES = tuple(f"{n}_json" if n in _JSON_FIELDS else n for n in ROW_FIELDS)


class RunRow:
    """One run as the index knows it; `status` already accounts for lost runs.

    params, summary, tags and gpus are decoded from JSON on first use: listing 10,000
    runs to show 50 of them decodes 50. Their text (`params_json`, ...) compares
    cheaply: runs with equal text have equal values.
    """

    name: str
    experiment_id: str
    trial: int
    status: str
    experiment: str
    created: float | None
    started: float | None
    ended: float | None
    duration: float | None
    host: str | None
    exit_code: int | None
    command: str
    snapshot: str | None
    git_commit: str | None
    params_json: str
    summary_json: str
    summary_keys_json: str  # the summary's keys, in order
    tags_json: str
    gpus_json: str
    config_json: str  # config.json's scalar leaves by dotted path: filterable like params

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.__dict__.update(zip(_ATTRIBUTES, values))

    @cached_property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @cached_property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.summary_json)

    @cached_property
    def tags(self) -> list[str]:
        return json.loads(self.tags_json)

    @cached_property
    def gpus(self) -> list[int]:
        """The GPU indices the run was given on its host."""
        return json.loads(self.gpus_json)

    @cached_property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ROW_FIELDS if name != "summary_keys"}


def read_row(runs_root: Path, name: str, mtime: int) -> tuple[Any, ...]:
    """The index row of the run folder `name` (whose mtime is `mtime`); a run that cannot
    be read gets a row that says why (its `error`)."""
    folder = os.path.join(runs_root, name)
    try:
        try:
            run = _load_json(os.path.join(folder, rd.RUN_JSON), "run.json")
        except FileNotFoundError:
            raise StoreError("run.json is missing") from None
        except ValueError as e:
            raise StoreError(f"run.json is corrupt ({e})") from None
        if not isinstance(run, dict):
            raise StoreError("run.json is not a JSON object")
        problem = rd.check_run(run)
        if problem is not None:
            raise StoreError(f"run.json: {problem}")
        summary = _summary(folder)
    except Exception as e:  # corrupt, hostile or half-written: remember why, never crash
        parsed = names.parse_run_name(name)
        return (name, parsed.expid if parsed else "", parsed.trial if parsed else 0,
                "corrupt", "", None, None, None, None, None, None, "{}", "{}", "[]", "[]", "",
                None, None, "[]", "{}", mtime, str(e).removeprefix(f"{name}: "))  # fmt: skip
    experiment = run.get("experiment") or {}
    get = run.get
    return (
        name,
        get("experiment_id", ""),
        get("trial", 0),
        get("status", "unknown"),
        experiment.get("name", "") if isinstance(experiment, dict) else str(experiment),
        get("created"),
        get("started"),
        get("ended"),
        get("duration"),
        get("host"),
        get("exit_code"),
        _dumps(get("params") or {}),
        _dumps(summary),
        _dumps(list(summary)),
        _dumps(get("tags") or []),
        get("command", ""),
        get("snapshot"),
        get("commit"),
        _dumps(get("gpus") or []),
        _dumps(_config_leaves(folder)),
        mtime,
        None,
    )


CONFIG_MAX_BYTES = 1 << 20  # a larger config.json is not indexed (it is still the run's)
CONFIG_MAX_LEAVES = 2000


_dumps = json.JSONEncoder(default=str).encode  # json.dumps without its per-call checks


def _load_json(path: str, label: str) -> Any:
    """A JSON file read in one call (FileNotFoundError when missing); ValueError for one
    that is not JSON or too deeply nested to read."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"{label} is nested too deeply to read") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{label}: {e}") from None


def _config_leaves(folder: str) -> dict[str, Any]:
    """The scalar values of config.json by dotted path (`model.depth`), so that a value
    a program passed to `xp.init(config=...)` is found like a param. An unreadable or
    huge config is left out: the index is a cache, never the reason a run is skipped."""
    try:
        with open(os.path.join(folder, rd.CONFIG_JSON), "rb") as f:
            data = f.read(CONFIG_MAX_BYTES + 1)
        if len(data) > CONFIG_MAX_BYTES:
            return {}
        config = json.loads(data)
    except (OSError, ValueError, RecursionError):
        return {}
    leaves: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [("", config)]
    while stack and len(leaves) < CONFIG_MAX_LEAVES:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):  # popped in the file's order
                stack.append((f"{path}.{key}" if path else str(key), item))
        elif path and (value is None or isinstance(value, (str, int, float, bool))):
            leaves[path] = value
    return leaves


def _summary(folder: str) -> dict[str, Any]:
    try:
        summary = _load_json(os.path.join(folder, rd.SUMMARY_JSON), "summary.json")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise StoreError(str(e) if "summary.json" in str(e) else f"summary.json: {e}") from None
    problem = rd.check_summary(summary)
    if problem is not None:
        raise StoreError(problem)
    return dict(summary)


PARALLEL_READS = 2000  # more runs to read than this: read them in worker processes


def read_rows(runs_root: Path, found: list[tuple[str, int]]) -> list[tuple[Any, ...]]:
    """Index rows of the runs `found` (name, folder mtime). Many (a cold index of a big
    runs root) are read by a process per core: parsing, not the disk, is the cost."""
    jobs = [(runs_root, name, mtime) for name, mtime in found]
    return map_jobs(_read_job, jobs, many=len(jobs) >= PARALLEL_READS)


def _read_job(job: tuple[Path, str, int]) -> tuple[Any, ...]:
    return read_row(*job)
