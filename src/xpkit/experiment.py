"""Experiment files: parse, validate, and expand the grid into run specs.

An experiment file `experiments/<topic>/NN_<name>.xp.toml` holds one experiment: its
random ID, a command template, a parameter grid and explicit extra runs.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import re
import shlex
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit import names
from xpkit.apps import APPS
from xpkit.envspec import EnvRequest, parse_env
from xpkit.errors import ConfigError
from xpkit.metrics_from import parse_metrics_from
from xpkit.search import Search, check_search_fits, parse_search
from xpkit.settings import line_of, read_toml
from xpkit.suggest import did_you_mean

SUFFIX = ".xp.toml"
Scalar = str | int | float | bool

FIELDS = {
    "id": "the experiment ID, 6 characters [a-z0-9], written by `xp new`",
    "name": "a short human-readable name",
    "description": "free text",
    "command": "the command template, e.g. 'python train.py --lr {lr}'",
    "grid": "table of parameter -> list of values; every combination runs",
    "runs": "array of tables [[runs]]: explicit extra parameter sets",
    "gpus": "GPUs per run (integer >= 0)",
    "tags": "list of strings",
    "resumable": "true: a preempted run goes back to the queue as its next attempt (same "
    "run, XP_CKPT_DIR kept)",
    "stop_signal": "the signal that asks a run to stop, e.g. 'SIGUSR1' (default 'SIGTERM'); "
    "SIGKILL follows after the kill grace",
    "config": "a [config] table, or the path of a JSON/YAML/TOML config file (from the "
    "project root); grid keys with dots set config paths",
    "app": "'hydra' or 'lightning': the program composes its own config (a @hydra.main app, "
    "a LightningCLI script); grid keys the command does not use are passed as its overrides "
    "and the config it saved becomes config.json",
    "metrics_from": "list of files the program's framework writes, read as metrics: "
    "'tensorboard', 'lightning-csv', 'hf-trainer-state', 'keras-csv'",
    "metrics_from_stdout": "array of tables [[metrics_from_stdout]] with a regular expression "
    "`pattern` whose named groups are metrics (and `step`)",
    "env": 'the Python environment the runs execute in: "requirements.txt", "uv.lock", '
    '"pyproject.toml", a table { requirements = ..., python = ... } or false (the interpreter '
    "running xp); default: env in xp.toml",
    "search": "a [search] table: what `xp sweep` searches (method, metric, goal, trials, "
    "[search.params]); [grid] keys then give fixed values",
}
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGQUIT")
CONFIG_PLACEHOLDER = "config"  # {config} in a command: the path of the run's config.json


@dataclass(frozen=True)
class RunSpec:
    """One run an experiment expands to."""

    params: dict[str, Scalar]
    command: str
    slug: str
    config: dict[str, Any] | None = None


@dataclass
class Experiment:
    path: Path | None
    id: str
    name: str
    command: str
    grid: dict[str, list[Scalar]] = field(default_factory=dict)
    runs: list[dict[str, Scalar]] = field(default_factory=list)
    gpus: int = 0
    tags: list[str] = field(default_factory=list)
    description: str = ""
    config: dict[str, Any] | None = None
    config_source: str | None = None  # where the config came from, for error messages
    metrics_from: dict[str, Any] = field(default_factory=dict)  # see execute/harvest.py
    resumable: bool = False
    stop_signal: str = "SIGTERM"
    app: str | None = None  # see apps.py
    search: Search | None = None  # `xp sweep` (search.py); then the grid is fixed values
    env: EnvRequest | bool | None = None  # None: xp.toml's; False: the interpreter running xp

    def trial_spec(self, suggested: dict[str, Scalar]) -> RunSpec:
        """The run of one sweep trial: the grid's fixed values with the suggested ones;
        its slug names the suggested values."""
        fixed = {k: v[0] for k, v in self.grid.items()}
        single = dataclasses.replace(self, grid={k: [v] for k, v in {**fixed, **suggested}.items()},
                                     runs=[], search=None)  # fmt: skip
        spec = single.expand()[0]
        shown: dict[str, object] = {
            k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in suggested.items()
        }
        return dataclasses.replace(spec, slug=names.params_slug(self.name, shown))

    def _grid(self, overrides: dict[str, Scalar]) -> dict[str, list[Scalar]]:
        self._check_overrides(overrides)
        grid = {k: list(v) for k, v in self.grid.items()}
        for key, value in overrides.items():
            grid[key] = [value]
        return grid

    def _check_overrides(self, overrides: dict[str, Scalar]) -> None:
        """`--param KEY` must name a parameter of this experiment (a grid or [[runs]] key,
        a placeholder of its command) or a config path (`optim.lr`, checked when set):
        a typo must not run the whole grid."""
        known = {*self.grid, *(k for run in self.runs for k in run)}
        known |= {p for p in template_fields(self.command) if p != CONFIG_PLACEHOLDER}
        for key in overrides:
            if key not in known and "." not in key and self.app is None:
                raise ConfigError(
                    f"--param {key}: {self.where} has no parameter {key!r}"
                    + did_you_mean(key, known, "parameters")
                    + " (a new parameter goes into [grid])"
                )

    def count(self, overrides: dict[str, Scalar] | None = None) -> int:
        """How many runs `expand` gives, computed without expanding."""
        grid = self._grid(overrides or {})
        product = math.prod(len(v) for v in grid.values()) if grid else int(not self.runs)
        return product + len(self.runs)

    def shape(self, overrides: dict[str, Scalar] | None = None) -> str:
        """`lr 4 × seed 3 (+ 2 [[runs]])`: what the count is made of."""
        grid = self._grid(overrides or {})
        text = " × ".join(f"{k} {len(v)}" for k, v in grid.items() if len(v) > 1) or "1"
        return text + (f" + {len(self.runs)} [[runs]]" if self.runs else "")

    def expand(
        self,
        overrides: dict[str, Scalar] | None = None,
        sets: dict[str, Any] | None = None,
        first: int | None = None,
    ) -> list[RunSpec]:
        """Every run of this experiment: the grid's cartesian product, then `[[runs]]`
        (only the `first` ones when given: a preview of a huge grid).

        `overrides` replace grid values (`--param`); `sets` replace config values
        (`--set`). Keys with dots address the config and must exist in it.
        """
        overrides = overrides or {}
        grid = self._grid(overrides)
        combos: list[dict[str, Scalar]] = []
        if grid:
            keys = list(grid)
            product = itertools.islice(itertools.product(*grid.values()), first)
            combos += [dict(zip(keys, values)) for values in product]
        elif not self.runs:
            combos.append({})
        single = {k: v[0] for k, v in grid.items() if len(v) == 1}
        listed = []  # the [[runs]] entries, completed by the grid's single values
        for index, extra in enumerate(self.runs):
            combo = {**single, **extra, **overrides}
            missing = [k for k in grid if k not in combo]
            if missing:
                raise ConfigError(
                    f"{self.where}: runs[{index}] has no value for {', '.join(missing)}; "
                    "give it there (the grid has several values for it)"
                )
            listed.append(combo)
        combos += listed
        placeholders = [p for p in template_fields(self.command) if p != CONFIG_PLACEHOLDER]
        for index, combo in enumerate(combos):
            missing = [p for p in placeholders if p not in combo]
            if missing:
                known = ", ".join(sorted(combo)) or "none"
                raise ConfigError(
                    f"{self.where}: the command uses {{{missing[0]}}} but run {index} has no "
                    f"value for it (parameters: {known}). Add it to [grid] or to each [[runs]]."
                )
        if first is not None:
            combos = combos[:first]
        # What varies over all runs, also when only the first are expanded: the grid's
        # keys of several values, and what differs between one grid run and [[runs]].
        several = [k for k, v in grid.items() if len(v) > 1]
        samples = ([{k: v[0] for k, v in grid.items()}] if grid else []) + listed
        varying = [
            k
            for k in _all_keys(samples)
            if k in several or len({repr(c.get(k)) for c in samples}) > 1
        ]
        sets = sets or {}
        return [
            RunSpec(
                params={**combo, **sets},
                command=render_command(self.command, combo),
                slug=names.params_slug(self.name, {k: combo[k] for k in varying if k in combo}),
                config=self.resolve_config(combo, sets),
            )
            if self.app is None
            else self._app_run(combo, placeholders, varying, sets)
            for combo in combos
        ]

    def _app_run(self, combo: dict[str, Scalar], placeholders: list[str], varying: list[str],
                 sets: dict[str, Any]) -> RunSpec:  # fmt: skip
        """A run of a program that composes its own config (apps.py): the keys the
        command does not use are its overrides; what it composes becomes config.json."""
        from xpkit import apps

        assert self.app is not None
        if sets:
            raise ConfigError(
                f"--set {next(iter(sets))}=...: {self.where} runs a {self.app} app, which "
                "composes its own config; pass overrides with --param KEY=VALUE"
            )
        written = render_command(self.command, combo)
        overrides = {k: v for k, v in combo.items() if k not in placeholders}
        command = written + apps.override_args(self.app, overrides)
        return RunSpec(
            params={**apps.overrides_in(self.app, written), **combo},
            command=command + apps.output_args(self.app, command),
            slug=names.params_slug(self.name, {k: combo[k] for k in varying if k in combo}),
        )

    def resolve_config(
        self, combo: dict[str, Scalar], sets: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The config one run receives: grid keys with dots and `--set` values applied,
        then `${...}` interpolations resolved."""
        dotted = {k: v for k, v in combo.items() if "." in k}
        if self.config is None:
            if dotted or sets:
                first = next(iter(dotted or sets))
                raise ConfigError(
                    f"{self.where}: '{first}' sets a config value, but this experiment has no "
                    'config; add a [config] table or `config = "path/to/config.yaml"`'
                )
            return None
        return apply_sets(self.config, {**dotted, **sets}, self.config_source or self.where)

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "experiment"


def _all_keys(combos: list[dict[str, Scalar]]) -> list[str]:
    seen: dict[str, None] = {}
    for combo in combos:
        seen.update(dict.fromkeys(combo))
    return list(seen)


def apply_sets(config: dict[str, Any], sets: dict[str, Any], where: str) -> dict[str, Any]:
    """A copy of `config` with each existing path set, interpolations resolved."""
    from xpkit.config import paths
    from xpkit.config.interpolate import resolve_interpolations

    result = copy.deepcopy(config)
    for path, value in sets.items():
        try:
            paths.set_existing(result, path, value)
        except paths.PathError as e:
            raise ConfigError(
                f"cannot set '{path}': {e} (config from {where}). Set only paths the config "
                "has; add new ones to the config itself"
            ) from None
    resolved: dict[str, Any] = resolve_interpolations(result, where, keep_resolvers=True)
    return resolved


def template_fields(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"command template {template!r} is invalid: {e}") from e
    return [name for _, name, _, _ in parsed if name is not None]


def render_command(template: str, params: dict[str, Scalar]) -> str:
    """The template with each placeholder replaced by its shell-quoted value."""
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if name == CONFIG_PLACEHOLDER:
            out.append('"$XP_CONFIG"')  # known once the run directory exists; the shell expands it
            continue
        if not name:
            raise ConfigError(f"command template {template!r}: empty placeholder {{}}")
        value: Any = params[name]
        if conversion == "r":
            value = repr(value)
        elif conversion == "s":
            value = str(value)
        out.append(shlex.quote(format(value, spec or "")))
    return "".join(out)


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, int, float, bool))


def default_name(path: Path) -> str:
    stem = path.name.removesuffix(SUFFIX)
    return re.sub(r"^\d+_", "", stem) or stem


def load_experiment(path: Path, root: Path | None = None) -> Experiment:
    """Parse and validate an experiment file; every error names the file and line."""
    if not path.is_file():
        raise ConfigError(
            f"experiment file {path} does not exist. Create one with `xp new {path}`"
            if path.name.endswith(SUFFIX)
            else f"experiment file {path} does not exist (experiment files end in {SUFFIX})"
        )
    raw = read_toml(path)
    source = path.read_text(encoding="utf-8", errors="replace")

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}{line_of(source, key)}: {message}")

    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        valid = "; ".join(f"{k} ({v})" for k, v in FIELDS.items())
        raise fail(unknown[0], f"unknown field '{unknown[0]}'. Valid fields: {valid}")
    for key in ("id", "command"):
        if key not in raw:
            raise ConfigError(f"{path}: required field '{key}' is missing ({FIELDS[key]})")
    for key in ("id", "name", "command", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise fail(key, f"'{key}' must be a string, got {raw[key]!r}")
    if not names.ID_PATTERN.match(raw["id"]):
        raise fail("id", f"'id' must be 6 characters [a-z0-9], got {raw['id']!r}")
    if not raw["command"].strip():
        raise fail("command", "'command' is empty")
    gpus = raw.get("gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise fail("gpus", f"'gpus' must be an integer >= 0, got {gpus!r}")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise fail("tags", f"'tags' must be a list of strings, got {tags!r}")
    resumable = raw.get("resumable", False)
    if not isinstance(resumable, bool):
        raise fail("resumable", f"'resumable' must be true or false, got {resumable!r}")
    stop_signal = raw.get("stop_signal", "SIGTERM")
    if stop_signal not in STOP_SIGNALS:
        raise fail(
            "stop_signal",
            f"'stop_signal' must be one of {', '.join(STOP_SIGNALS)}, got {stop_signal!r}",
        )
    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise fail("grid", f"'grid' must be a table [grid], got {grid_raw!r}")
    grid: dict[str, list[Scalar]] = {}
    for key, values in grid_raw.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise fail(key, f"grid.{key} is an empty list; give at least one value")
        for index, value in enumerate(values):
            if not _is_scalar(value):
                raise fail(
                    key,
                    f"grid.{key}[{index}] is {type(value).__name__} {value!r}; grid values "
                    "must be scalars (string, integer, float, boolean)",
                )
        grid[key] = values
    runs_raw = raw.get("runs", [])
    if not isinstance(runs_raw, list) or not all(isinstance(r, dict) for r in runs_raw):
        raise fail("runs", "'runs' must be an array of tables [[runs]]")
    for index, extra in enumerate(runs_raw):
        for key, value in extra.items():
            if not _is_scalar(value):
                raise fail(key, f"runs[{index}].{key} is {value!r}; values must be scalars")
    if CONFIG_PLACEHOLDER in grid or any(CONFIG_PLACEHOLDER in r for r in runs_raw):
        raise fail(CONFIG_PLACEHOLDER, "'config' is reserved for {config}; rename the parameter")
    app = raw.get("app")
    if app is not None and app not in APPS:
        raise fail("app", f"'app' must be one of {', '.join(APPS)}, got {app!r}")
    if app is not None and "config" in raw:
        raise fail("config", f"a {app} app composes its own config: remove 'config' (or 'app')")
    config, config_source = _experiment_config(raw.get("config"), path, root, fail)
    metrics_from = parse_metrics_from(raw, fail, f"{path}{line_of(source, 'metrics_from_stdout')}")
    search = None
    if "search" in raw:
        search = parse_search(raw["search"], fail)
        check_search_fits(search, grid, runs_raw, template_fields(raw["command"]), fail)
    env = parse_env(raw["env"], lambda m: fail("env", m)) if "env" in raw else None
    experiment = Experiment(
        path=path,
        id=raw["id"],
        name=raw.get("name") or default_name(path),
        command=raw["command"],
        grid=grid,
        runs=runs_raw,
        gpus=gpus,
        tags=tags,
        description=raw.get("description", ""),
        config=config,
        config_source=config_source,
        metrics_from=metrics_from,
        resumable=resumable,
        stop_signal=stop_signal,
        app=app,
        search=search,
        env=env,
    )
    try:
        template_fields(experiment.command)
    except ConfigError as e:
        raise fail("command", str(e)) from e
    return experiment


def _experiment_config(
    value: Any, path: Path, root: Path | None, fail: Callable[[str, str], ConfigError]
) -> tuple[dict[str, Any] | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, dict):
        return value, f"{path} [config]"
    if not isinstance(value, str):
        raise fail("config", f"'config' must be a table or a file path, got {value!r}")
    from xpkit.config.files import load_config

    config_path = (root or Path.cwd()) / value
    if not config_path.is_file():
        raise fail("config", f"config file '{value}' not found (looked for {config_path})")
    return load_config(config_path), str(config_path)


def find_experiment_files(root: Path, skip: tuple[Path, ...] = ()) -> list[Path]:
    """Every experiment file in the project, skipping hidden folders and `skip`."""
    found = []
    skipped = {p.resolve() for p in skip}
    for path in sorted(root.rglob(f"*{SUFFIX}")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts[:-1]):
            continue
        if any(parent.resolve() in skipped for parent in path.parents):
            continue
        found.append(path)
    return found


def read_id(path: Path) -> str | None:
    try:
        value = read_toml(path).get("id")
    except ConfigError:
        return None
    return value if isinstance(value, str) else None


def check_unique_id(experiment: Experiment, others: list[Path]) -> None:
    """Two files with one ID means a copy: say which and how to give it a fresh one."""
    assert experiment.path is not None
    mine = experiment.path.resolve()
    for other in others:
        if other.resolve() != mine and read_id(other) == experiment.id:
            other = Path(os.path.relpath(other))
            raise ConfigError(
                f"experiment ID '{experiment.id}' is used by two files: {experiment.path} and "
                f"{other}. One was probably copied from the other; runs of both would mix. "
                f"Give the copy a fresh ID with `xp new --reid <copy>` "
                f"(or create copies with `xp new NEW --from {other}`)."
            )
