"""The experiments of the project: their files, and each one's report rendered to HTML
in memory (the dashboard writes nothing; `xp report` writes the Markdown)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

from xpkit.errors import XpError
from xpkit.experiment import Experiment, find_experiment_files, load_experiment, read_id
from xpkit.settings import Settings

REPORT_TTL_SECONDS = 30.0  # a report's page and its images come from one rendering


@dataclass
class ExperimentFile:
    id: str
    path: Path
    relative: str


def experiment_files(settings: Settings) -> list[ExperimentFile]:
    skip = (settings.runs, settings.workdir)
    found = []
    for path in find_experiment_files(settings.root, skip=skip):
        expid = read_id(path)
        if expid:
            found.append(ExperimentFile(expid, path, str(path.relative_to(settings.root))))
    return found


@dataclass
class RenderedReport:
    experiment: Experiment
    file: ExperimentFile
    html: str
    images: dict[str, bytes]  # path relative to the report -> PNG
    error: str
    made: float
    search: dict[str, Any] | None = None  # a search's trials, drawn with Plotly


class ReportCache:
    """Reports rendered on demand and kept briefly, so a page's images are the ones
    rendered with it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._reports: dict[str, RenderedReport] = {}
        self._lock = Lock()

    def get(self, expid: str, fresh: bool = True) -> RenderedReport | None:
        with self._lock:
            cached = self._reports.get(expid)
            if cached and (not fresh or time.time() - cached.made < REPORT_TTL_SECONDS):
                return cached
            found = next((f for f in experiment_files(self.settings) if f.id == expid), None)
            if found is None:
                return None
            self._reports[expid] = report = _render(self.settings, found)
            return report


def _render(settings: Settings, file: ExperimentFile) -> RenderedReport:
    from markdown_it import MarkdownIt

    from xpkit.report.make import experiment_report
    from xpkit.report.render import ReportOptions

    experiment = load_experiment(file.path, settings.root)
    html, images, error, search = "", {}, "", None
    try:
        report, _ = experiment_report(settings, file.path, ReportOptions())
        # html=False: anything HTML-like in run names or params is shown as text.
        html = MarkdownIt("commonmark", {"html": False}).enable("table").render(report.markdown)
        images, search = report.images, report.search
    except (XpError, ImportError) as e:
        error = str(e)
    return RenderedReport(experiment, file, html, images, error, time.time(), search)
