"""Compare runs: config by JSON path, params, code, environment, summary metrics;
and check that a rerun reproduced its original's numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpkit.capture.git import git, snapshot_exists
from xpkit.config import paths
from xpkit.errors import GitError
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir
from xpkit.values import is_number

MAX_COMMITS = 50


def dict_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Flat maps → what was added, removed and changed (old, new) from a to b."""
    return {
        "added": {k: b[k] for k in b if k not in a},
        "removed": {k: a[k] for k in a if k not in b},
        "changed": {k: [a[k], b[k]] for k in a if k in b and not _same(a[k], b[k])},
    }


def _same(x: Any, y: Any) -> bool:
    if type(x) is not type(y) and not (is_number(x) and is_number(y)):
        return False
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return bool(x == y)


def flat_config(tree: Any) -> dict[str, Any]:
    """A config as JSON path -> leaf value."""
    return dict(paths.flatten(tree)) if tree not in (None, {}) else {}


def differing_paths(flat: list[dict[str, Any]]) -> list[str]:
    """Keys whose values are not the same in every one of the flat maps (or absent
    from some), in first-seen order."""
    keys = dict.fromkeys(k for tree in flat for k in tree)
    return [
        k for k in keys
        if any(k not in tree for tree in flat)
        or any(not _same(flat[0][k], tree[k]) for tree in flat[1:])
    ]  # fmt: skip


def _packages(env: dict[str, Any]) -> dict[str, str]:
    found = {}
    for entry in env.get("packages", {}).get("packages", []):
        name, _, version = entry.partition("==")
        found[name.lower()] = version
    return found


def _env_facts(env: dict[str, Any]) -> dict[str, Any]:
    gpus = env.get("gpus", {})
    return {
        "python": env.get("python", {}).get("version"),
        "host": env.get("host", {}).get("hostname"),
        "gpus": [g.get("name") for g in gpus.get("gpus", [])],
        "cuda": gpus.get("cuda"),
        "driver": gpus.get("driver"),
    }


def diff_runs(
    a: RunDir, b: RunDir, *, patch: bool = False, repo: Path | None = None
) -> dict[str, Any]:
    """Everything that differs between two runs, as JSON-able sections."""
    run_a, run_b = a.read_run(), b.read_run()
    env_a, env_b = a.read_optional(rd.ENV_JSON, {}), b.read_optional(rd.ENV_JSON, {})
    facts_a, facts_b = _env_facts(env_a), _env_facts(env_b)
    summary_a = a.read_optional(rd.SUMMARY_JSON, {}) or {}
    summary_b = b.read_optional(rd.SUMMARY_JSON, {}) or {}
    config_a, config_b = (
        flat_config(a.read_optional(rd.CONFIG_JSON)),
        flat_config(b.read_optional(rd.CONFIG_JSON)),
    )
    return {
        "runs": [a.name, b.name],
        "config": dict_diff(config_a, config_b),
        "params": dict_diff(run_a.get("params") or {}, run_b.get("params") or {}),
        "code": diff_code(a, b, run_a, run_b, patch=patch, repo=repo),
        "env": {
            **{k: [facts_a[k], facts_b[k]] for k in facts_a if facts_a[k] != facts_b[k]},
            "packages": dict_diff(_packages(env_a), _packages(env_b)),
        },
        "summary": {
            key: {
                "a": summary_a.get(key),
                "b": summary_b.get(key),
                "delta": summary_b[key] - summary_a[key]
                if is_number(summary_a.get(key)) and is_number(summary_b.get(key)) else None,
            }
            for key in dict.fromkeys([*summary_a, *summary_b])
        },
    }  # fmt: skip


def diff_code(
    a: RunDir, b: RunDir, run_a: dict[str, Any], run_b: dict[str, Any], *,
    patch: bool, repo: Path | None,
) -> dict[str, Any]:  # fmt: skip
    """Commits between the two snapshots and the files that differ."""
    sha_a, sha_b = run_a.get("snapshot"), run_b.get("snapshot")
    result: dict[str, Any] = {"a": sha_a, "b": sha_b, "same": sha_a == sha_b, "available": False}
    if not sha_a or not sha_b:
        result["note"] = "a run has no code provenance (--no-git)"
        return result
    if sha_a == sha_b:
        result["available"] = True
        return result
    candidates = [repo, Path(run_a.get("project") or ""), Path(run_b.get("project") or "")]
    where = next(
        (p for p in candidates if p and p.is_dir() and _has(p, sha_a) and _has(p, sha_b)), None
    )
    if where is None:
        result["note"] = "the snapshots are not in a repository here (made on another machine?)"
        return result
    result["available"] = True
    log = "--format=%h %s"
    result["commits_a_to_b"] = git(
        where, "log", log, f"-{MAX_COMMITS}", f"{sha_a}..{sha_b}"
    ).splitlines()
    result["commits_b_to_a"] = git(
        where, "log", log, f"-{MAX_COMMITS}", f"{sha_b}..{sha_a}"
    ).splitlines()
    files = []
    for line in git(where, "diff", "--numstat", sha_a, sha_b).splitlines():
        added, deleted, path = line.split("\t", 2)
        files.append({"path": path, "added": added, "deleted": deleted})
    result["files"] = files
    if patch:
        result["patch"] = git(where, "diff", "--no-color", sha_a, sha_b)
    return result  # fmt: skip


def _has(repo: Path, sha: str) -> bool:
    try:
        return snapshot_exists(repo, sha)
    except GitError:
        return False


@dataclass
class MetricCheck:
    name: str
    original: Any
    new: Any
    reproduced: bool
    difference: float | None


def check_reproduced(
    original: dict[str, Any], new: dict[str, Any], rtol: float
) -> list[MetricCheck]:
    """Each of the original's summary metrics: equal in the rerun, within `rtol` for numbers."""
    checks = []
    for name, old in original.items():
        value = new.get(name)
        difference = None
        if is_number(old) and value is not None and is_number(value):
            difference = abs(value - old)
            same = math.isclose(old, value, rel_tol=rtol, abs_tol=0.0) or (
                math.isnan(old) and math.isnan(value)
            )
        else:
            same = name in new and _same(old, value)
        checks.append(MetricCheck(name, old, value, same, difference))
    return checks
