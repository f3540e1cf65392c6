"""`xp init` and `xp new`: write xp.toml and experiment files for the user to edit."""

from __future__ import annotations

import re
from pathlib import Path

from xpkit import names
from xpkit.errors import ConfigError
from xpkit.experiment import SUFFIX, default_name, find_experiment_files, read_id
from xpkit.settings import CONFIG_FILE, Settings
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

XP_TOML = """\
# xpkit project settings (docs: README.md, `xp --help`).

# Folder holding every run directory, relative to this file. May be a mount shared
# by several machines (sshfs/NFS). `xp init` adds it to .gitignore.
runs = "runs"

# Where snapshot worktrees are materialized (default: ~/.cache/xpkit/worktrees/<project>).
# Keep it on a local disk.
# workdir = "/scratch/xp-worktrees"

# Ignored folders every run needs (datasets, pretrained weights): symlinked into each
# snapshot worktree instead of being copied.
link = []
"""

EXPERIMENT_TOML = """\
# An xpkit experiment: `xp run {path}` runs every combination of [grid] (plus each
# [[runs]] entry) from a snapshot of your code; `xp run ... --dry-run` lists them.

# Experiment ID: random, one per file, written by `xp new`. Runs are named
# <id>_<trial>_<slug>; grep for the ID to find them. Never copy it into another file:
# `xp new NEW_PATH --from {path}` makes a copy with a fresh ID.
id = "{expid}"

# Short human-readable name, used in run names and reports.
name = "{name}"

# What this experiment tests (free text, shown in reports).
description = ""

# The command each run executes, from the project root. {{param}} is replaced by the
# run's value of that parameter, shell-quoted. The program also gets XP_RUN_DIR,
# XP_RUN_NAME, XP_EXPERIMENT_ID and XP_TRIAL in its environment.
command = "python train.py --lr {{lr}} --seed {{seed}}"

# GPUs each run needs (0 = CPU only); used by the queue (`xp submit`, `xp worker`).
gpus = 0

# Tags to filter by: `xp ls --tag {name}`.
tags = ["{name}"]

# Every combination of these values is one run (here 2 x 3 = 6 runs).
# Values are scalars: strings, integers, floats, booleans.
[grid]
lr = [0.1, 0.01]
seed = [0, 1, 2]

# Extra runs outside the grid, one table each. Uncomment to use.
# [[runs]]
# lr = 0.5
# seed = 0

# A typed config instead of (or beside) command-line flags: the program reads it as
# xp.init().config (or the file {{config}}) and builds it with xp.build. Grid keys with
# dots set its values: "optim.lr" = [0.1, 0.01].
# [config]
# optim = {{_target_ = "torch.optim.SGD", _partial_ = true, lr = 0.1}}

# Metrics of a program that does not use the xpkit API: files its framework writes
# ("tensorboard", "lightning-csv", "hf-trainer-state", "keras-csv"), and/or output
# lines matched by a regular expression (named groups = metrics).
# metrics_from = ["tensorboard"]
# [[metrics_from_stdout]]
# pattern = 'step (?P<step>\\d+) .* loss (?P<loss>[0-9.e+-]+)'
"""

_ID_LINE = re.compile(r'^(\s*id\s*=\s*)"[^"]*"', re.MULTILINE)


def init_project(root: Path, *, force: bool = False) -> list[str]:
    """Write xp.toml and ignore the runs root; returns what was done."""
    target = root / CONFIG_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; edit it, or pass --force to overwrite it")
    target.write_text(XP_TOML, encoding="utf-8")
    done = [f"wrote {target}"]
    gitignore = root / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if not {"runs", "runs/", "/runs", "/runs/"} & {line.strip() for line in lines}:
        prefix = "" if not lines or lines[-1] == "" else "\n"
        with gitignore.open("a", encoding="utf-8") as f:
            f.write(f"{prefix}# xpkit runs root\n/runs/\n")
        done.append(f"added /runs/ to {gitignore}")
    return done


def taken_ids(settings: Settings) -> set[str]:
    """Experiment IDs in use by experiment files or by runs in the runs root."""
    taken = set()
    for path in find_experiment_files(settings.root, skip=(settings.runs, settings.workdir)):
        found = read_id(path)
        if found:
            taken.add(found)
    if settings.runs.is_dir():
        for entry in settings.runs.iterdir():
            parsed = names.parse_run_name(entry.name)
            if parsed:
                taken.add(parsed.expid)
    return taken


def experiment_path(path: Path) -> Path:
    return path if path.name.endswith(SUFFIX) else path.with_name(path.name + SUFFIX)


def new_experiment(settings: Settings, path: Path, *, source: Path | None = None) -> Path:
    """Write a new experiment file with a fresh ID (a copy of `source` if given)."""
    target = experiment_path(path)
    if target.exists():
        raise ConfigError(
            f"{target} already exists. Choose another name, or give it a fresh ID with "
            f"`xp new --reid {target}`"
        )
    expid = names.new_experiment_id(taken_ids(settings))
    if source is not None:
        if not source.is_file():
            raise ConfigError(f"--from {source}: no such file")
        text = source.read_text(encoding="utf-8")
        if not _ID_LINE.search(text):
            raise ConfigError(f'--from {source}: it has no `id = "..."` line to replace')
        text = _ID_LINE.sub(lambda m: f'{m.group(1)}"{expid}"', text, count=1)
    else:
        try:
            shown = target.relative_to(settings.root)
        except ValueError:
            shown = target
        text = EXPERIMENT_TOML.format(path=shown, expid=expid, name=default_name(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def runs_made_from(settings: Settings, path: Path) -> int:
    """How many runs were made from the experiment file `path` under its current ID."""
    from xpkit.experiment import load_experiment
    from xpkit.store.index import load_rows

    try:
        experiment = load_experiment(path, settings.root)
    except ConfigError:
        return 0
    rows, _ = load_rows(settings.runs, experiment.id)
    mine = path.resolve()
    count = 0
    for row in rows:
        info = RunDir(settings.runs / row.name).read_optional(rd.RUN_JSON, {}) or {}
        file = (info.get("experiment") or {}).get("file") if isinstance(info, dict) else None
        if file and (settings.root / file).resolve() == mine:
            count += 1
    return count


def reid_experiment(settings: Settings, path: Path) -> str:
    """Give an existing experiment file (a copy) a fresh ID in place."""
    if not path.is_file():
        raise ConfigError(f"--reid {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if not _ID_LINE.search(text):
        raise ConfigError(f'--reid {path}: it has no `id = "..."` line to replace')
    expid = names.new_experiment_id(taken_ids(settings))
    path.write_text(_ID_LINE.sub(lambda m: f'{m.group(1)}"{expid}"', text, count=1), "utf-8")
    return expid
