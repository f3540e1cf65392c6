"""A sweep's trials as its runs record them: the truth the study is checked against,
rebuilt from, and reported from.

Each trial run's run.json has `search: {"study": EXPID, "trial": KEY, "fingerprint": …}`.
A trial usually has one run; a lost one retried as a new trial of the experiment has
two (the copy carries the same key); a resumable one keeps one run across attempts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpkit.errors import XpError
from xpkit.search import Search
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir
from xpkit.store.trash import trash_dir
from xpkit.sweep import engine

# How a trial's latest run ended, as the study is told.
TOLD = {
    "finished": "COMPLETE",
    "pruned": "PRUNED",
    "failed": "FAIL",
    "killed": "FAIL",
    "cancelled": "FAIL",
}
MAX_LOSSES = 2  # a lost trial is retried once; lost again, it failed


@dataclass
class TrialRun:
    run_dir: RunDir
    info: dict[str, Any]
    status: str
    gone: bool = False

    @property
    def name(self) -> str:
        return self.run_dir.name

    def summary(self) -> dict[str, Any]:
        return self.run_dir.read_optional(rd.SUMMARY_JSON, {}) or {}

    def refresh(self) -> None:
        """Read run.json again; a run that cannot be read keeps what was known (`gone`
        says so: moved to the trash, or its folder briefly out of reach)."""
        try:
            self.info = self.run_dir.read_run()
        except (XpError, OSError):
            self.gone = True
            return
        self.gone = False
        self.status = rd.status_of(self.run_dir, self.info)

    def trashed(self) -> bool:
        return (trash_dir(self.run_dir.path.parent) / self.name).is_dir()


@dataclass
class TrialHistory:
    """Every run of one trial, oldest first."""

    key: int
    runs: list[TrialRun] = field(default_factory=list)

    @property
    def latest(self) -> TrialRun:
        return self.runs[-1]

    @property
    def active(self) -> bool:
        return any(r.status in rd.ACTIVE for r in self.runs)

    def losses(self) -> int:
        """Times a run of this trial was lost (its attempts and copies)."""
        lost = 0
        for run in self.runs:
            lost += int(run.status == "lost")
            attempts = run.info.get("attempts") or []
            lost += sum(1 for a in attempts if isinstance(a, dict) and a.get("status") == "lost")
        return lost

    def params(self, search: Search) -> dict[str, Any]:
        params = self.runs[0].info.get("params") or {}
        return {k: params[k] for k in search.params if k in params}


def find(runs_root: Path, expid: str) -> dict[int, TrialHistory]:
    """The trials of study `expid` in the runs root: one directory listing, then the
    run.json of the runs whose name starts with the experiment ID."""
    found: dict[int, TrialHistory] = {}
    prefix = f"{expid}_"
    try:
        entries = [e for e in os.scandir(runs_root) if e.name.startswith(prefix)]
    except FileNotFoundError:
        return {}
    runs = []
    for entry in entries:
        run_dir = RunDir(Path(entry.path))
        try:
            info = run_dir.read_run()
        except (XpError, OSError):
            continue
        search = info.get("search")
        if not isinstance(search, dict) or search.get("study") != expid:
            continue
        key = search.get("trial")
        if isinstance(key, int):
            runs.append(
                (
                    int(info.get("trial") or 0),
                    key,
                    TrialRun(run_dir, info, rd.status_of(run_dir, info)),
                )
            )
    for _, key, run in sorted(runs, key=lambda r: r[0]):
        found.setdefault(key, TrialHistory(key)).runs.append(run)
    return found


def intermediate(run: TrialRun, metric: str) -> dict[int, float]:
    values, _ = engine.metric_values(run.run_dir.file(rd.METRICS), metric)
    return dict(values)


def outcome(history: TrialHistory, metric: str) -> tuple[str, float | None, str]:
    """What to tell the study of an ended trial: state, value, and why (for FAIL)."""
    latest = history.latest
    state = TOLD.get(latest.status, "FAIL")
    if state == "COMPLETE":
        value = engine.value_of(latest.summary(), metric)
        if value is None:
            return (
                "FAIL",
                None,
                (
                    f"{latest.name} finished without a finite '{metric}' in its "
                    "summary (log it with run.log or set run.summary)"
                ),
            )
        return state, value, ""
    if state == "PRUNED":
        values = intermediate(latest, metric)
        return state, values[max(values)] if values else None, str(latest.info.get("reason") or "")
    return state, None, f"{latest.name} {latest.status}: {latest.info.get('reason') or ''}".strip()


def adopt(study: Any, search: Search, history: TrialHistory) -> Any | None:
    """Put a trial the study does not know (a rebuild; a journal behind its runs) into
    it: an ended one as it ended, an active one as a running trial with its params.
    Returns the running trial, or None."""
    params = history.params(search)
    attrs = {engine.KEY: history.key, "run": history.latest.name}
    if history.active or history.latest.status == "lost":
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
        return study.ask(fixed_distributions=engine.distributions(search))
    state, value, why = outcome(history, search.metric)
    if why and state == "FAIL":
        attrs["reason"] = why
    study.add_trial(
        engine.frozen(
            search,
            params,
            state=state,
            value=value,
            intermediate=intermediate(history.latest, search.metric),
            attrs=attrs,
        )
    )
    return None
