"""`xp sweep FILE --status`: where a search stands, read from its runs (the truth; the
journal lives only on the controller's machine, and is not needed to look)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xpkit.experiment import Experiment
from xpkit.report.search import TrialPoint, ranked
from xpkit.search import Search
from xpkit.settings import Settings
from xpkit.sweep import engine, trials
from xpkit.sweep.lock import holder, lock_path


@dataclass
class TrialRow(TrialPoint):
    """A trial as the report has it, and why its latest run ended, and how many runs it
    took (a lost one retried has two)."""

    reason: str = ""
    runs: int = 1


@dataclass
class SweepStatus:
    search: Search
    rows: list[TrialRow]  # by trial key
    controller: dict[str, Any] | None  # the live controller, or None

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def ranked(self) -> list[TrialRow]:
        """Finished trials with a value, best first."""
        return ranked(self.rows, self.search)

    @property
    def best(self) -> TrialRow | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "metric": self.search.metric,
            "goal": self.search.goal,
            "method": self.search.method,
            "planned": self.search.planned,
            "controller": self.controller,
            "counts": self.counts(),
            "best": best.__dict__ if best else None,
            "trials": [r.__dict__ for r in self.rows],
        }


def sweep_status(settings: Settings, experiment: Experiment) -> SweepStatus:
    assert experiment.search is not None
    search = experiment.search
    rows = []
    for key, history in sorted(trials.find(settings.runs, experiment.id).items()):
        latest = history.latest
        value = None
        if latest.status == "finished":
            value = engine.value_of(latest.summary(), search.metric)
        elif latest.status == "pruned":
            values = trials.intermediate(latest, search.metric)
            value = values[max(values)] if values else None
        rows.append(
            TrialRow(
                key,
                latest.name,
                latest.status,
                value,
                history.params(search),
                str(latest.info.get("reason") or ""),
                len(history.runs),
            )
        )
    return SweepStatus(search, rows, holder(lock_path(settings.runs, experiment.id)))
