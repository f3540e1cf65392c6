"""The environments on this machine: `xp env build`, `xp env ls`, `xp env gc`.

An environment is needed while a queued or running run needs it: the runs that used it
(its used.log names their folders, whatever project they belong to) and this project's
queued runs (their key computed from their snapshots). gc never removes those.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit.envspec import EnvRequest, EnvSpec, resolve
from xpkit.errors import ConfigError
from xpkit.execute import envs
from xpkit.settings import Settings
from xpkit.store import rundir as rd

REMOVING = ".removing-"
ACTIVE = ("queued", "running")


@dataclass
class EnvInfo:
    key: str
    path: Path
    manifest: dict[str, Any]
    last_used: float
    runs: list[str] = field(default_factory=list)  # names, oldest first
    run_paths: list[str] = field(default_factory=list)

    @property
    def file(self) -> str:
        return str(self.manifest.get("spec", {}).get("file") or "?")

    @property
    def size(self) -> int:
        return int(self.manifest.get("size_bytes") or 0)


def list_envs() -> list[EnvInfo]:
    """Every complete environment on this machine, most recently used first."""
    found = []
    root = envs.envs_dir()
    for path in root.iterdir() if root.is_dir() else ():
        if path.name.startswith(".") or not path.is_dir():
            continue
        environment = envs.find(path.name)
        if environment is None:
            continue
        info = EnvInfo(path.name, path, environment.manifest, environment.manifest.get("built", 0))
        try:
            info.last_used = (path / envs.USED).stat().st_mtime
            for line in (path / envs.USED).read_text(errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) == 3 and parts[1] not in info.run_paths:
                    info.run_paths.append(parts[1])
                    info.runs.append(parts[2])
        except OSError:
            pass
        found.append(info)
    return sorted(found, key=lambda e: -e.last_used)


def needed(settings: Settings, environments: list[EnvInfo]) -> dict[str, str]:
    """key -> the queued or running run that needs it."""
    from xpkit.execute.prepared import snapshot_reader
    from xpkit.store.query import Selection, select_runs

    keep: dict[str, str] = {}
    for environment in environments:
        for path in reversed(environment.run_paths):
            info = rd.RunDir(Path(path)).read_optional(rd.RUN_JSON, {}) or {}
            if info.get("status") in ACTIVE:
                keep[environment.key] = str(info.get("name") or Path(path).name)
                break
    if not settings.runs.is_dir():
        return keep
    seen: set[str] = set()
    for run_dir in select_runs(settings.runs, Selection(statuses=("queued",))):
        info = run_dir.read_optional(rd.RUN_JSON, {}) or {}
        if not info.get("env"):
            continue
        identity = json.dumps([info.get("snapshot"), info.get("project"), info["env"]])
        if identity in seen:
            continue
        seen.add(identity)
        spec = EnvSpec.from_json(info["env"])
        try:
            read, where = snapshot_reader(settings, info)
            key = envs.env_key(spec, envs.read_contents(spec, read, where))
        except Exception:  # its snapshot is unreadable here: it cannot need ours
            continue
        keep.setdefault(key, run_dir.name)
    return keep


def collect(
    settings: Settings, *, keep: int, older_than: float, dry_run: bool,
    say: Callable[[str], None],
) -> int:  # fmt: skip
    """Remove environments beyond the `keep` most recently used that were last used
    more than `older_than` seconds ago, unless a queued or running run
    needs them; and what killed builds left. Returns how many were (or would be) removed."""
    environments = list_envs()
    needs = needed(settings, environments)
    now = time.time()
    removed = 0
    for index, environment in enumerate(environments):
        if index < keep:
            continue
        if now - environment.last_used < older_than:
            continue
        if environment.key in needs:
            say(f"kept {environment.key}: {needs[environment.key]} needs it")
            continue
        removed += 1
        size = format_size(environment.size)
        if dry_run:
            say(f"would remove {environment.key} ({environment.file}, {size})")
            continue
        with envs.key_lock(environment.key):
            _remove(environment.path)
        say(f"removed {environment.key} ({environment.file}, {size})")
    if not dry_run:
        for leftover in envs.remove_leftovers():
            say(f"removed {leftover.name} (left by a build that was stopped)")
        for leftover in envs.envs_dir().glob(f"{REMOVING}*"):
            shutil.rmtree(leftover, ignore_errors=True)
    return removed


def _remove(path: Path) -> None:
    """Renamed first, so that a removal stopped half-way leaves no `<key>` folder that
    looks complete; then deleted."""
    doomed = path.with_name(f"{REMOVING}{path.name}-{os.getpid()}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    # The key's lock file stays: a builder may be waiting on it, and one unlinked here
    # would let a second builder take a new one at the same time.


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def spec_for(settings: Settings, file: Path | None) -> EnvSpec:
    """What `xp env build [FILE]` builds: an experiment file's env (else xp.toml's); a
    requirements file, uv.lock or pyproject.toml with xp.toml's other env settings; or,
    without FILE, xp.toml's env."""
    from xpkit.execute.launch import run_env
    from xpkit.experiment import SUFFIX, load_experiment

    if file is None or file.name.endswith(SUFFIX):
        experiment = load_experiment(file, settings.root) if file is not None else None
        raw = run_env(settings, experiment)
        if raw is None and file is None:
            raise ConfigError("xp.toml has no env: give a FILE (an experiment file, a "
                              "requirements file, uv.lock or pyproject.toml), or set "
                              'env = "requirements.txt" in xp.toml')  # fmt: skip
        if raw is None:
            raise ConfigError(f"{file} runs with the interpreter running xp (no env in it or "
                              "in xp.toml): there is no environment to build")  # fmt: skip
        return EnvSpec.from_json(raw)
    if not file.is_file():
        raise ConfigError(f"{file} does not exist: give an experiment file, a requirements "
                          "file, uv.lock or pyproject.toml")  # fmt: skip
    try:
        relative = file.resolve().relative_to(settings.root.resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"{file} is outside the project {settings.root}") from None
    base = settings.env  # xp.toml's python and index settings, with FILE's pins
    request = dataclasses.replace(base, file=relative) if base else EnvRequest(relative)
    return resolve(request, settings.root, lambda m: ConfigError(f"{file}: {m}"))


def build(settings: Settings, file: Path | None, say: Callable[[str], None]) -> envs.Environment:
    spec = spec_for(settings, file)
    contents = envs.read_contents(spec, envs.folder_reader(settings.root), str(settings.root))
    return envs.ensure(spec, contents, say=say)
