"""Reports of experiments: choose the runs, render, write beside the experiment file,
or check that what is committed is up to date."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from xpkit.errors import ConfigError
from xpkit.experiment import SUFFIX, Experiment, load_experiment
from xpkit.report.curves import load_curves
from xpkit.report.render import Report, ReportOptions, render_report
from xpkit.report.table import ReportRun
from xpkit.settings import Settings
from xpkit.store.index import RunRow, load_rows

CURVE_PREFIX = "curve-"


def report_paths(experiment_file: Path) -> tuple[Path, Path, Path]:
    """(report .md, its assets folder, its optional template) beside the file."""
    stem = experiment_file.name.removesuffix(SUFFIX)
    folder = experiment_file.parent
    return folder / f"{stem}.md", folder / f"{stem}.assets", folder / f"{stem}.md.j2"


def _report_run(row: RunRow) -> ReportRun:
    return ReportRun(
        name=row.name, status=row.status, params=row.params, summary=row.summary,
        duration=row.duration, host=row.host, commit=row.git_commit, snapshot=row.snapshot,
    )  # fmt: skip


def _experiment_dict(experiment: Experiment, settings: Settings) -> dict[str, Any]:
    assert experiment.path is not None
    return {
        "id": experiment.id,
        "name": experiment.name,
        "description": experiment.description,
        "file": str(experiment.path.resolve().relative_to(settings.root)),
        "command": experiment.command,
        "grid": experiment.grid,
        "tags": experiment.tags,
    }


OPTIONS_LINE = "<!-- xp report options: "


def recorded_options(markdown: Path) -> ReportOptions | None:
    """The options a report was made with, as its first line records them."""
    try:
        with open(markdown, encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return None
    if not first.startswith(OPTIONS_LINE):
        return None
    try:
        data: dict[str, Any] = json.loads(first[len(OPTIONS_LINE) :].rsplit("-->", 1)[0])
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return ReportOptions(**values)
    except (ValueError, TypeError):
        return None


def _options_line(options: ReportOptions) -> str:
    changed = {k: v for k, v in asdict(options).items() if v != getattr(ReportOptions(), k)}
    return f"{OPTIONS_LINE}{json.dumps(changed, sort_keys=True)} -->\n" if changed else ""


def experiment_report(
    settings: Settings, path: Path, options: ReportOptions | None
) -> tuple[Report, Path]:
    """The report of one experiment file, and where its Markdown belongs. `options`
    None: those it was made with last time (recorded in it), else the defaults; the
    options are part of the report, so `--check` regenerates it the same way."""
    try:
        path.resolve().relative_to(settings.root)
    except ValueError:
        raise ConfigError(
            f"{path} is outside the project {settings.root}; reports are written beside "
            "experiment files, which belong to the project"
        ) from None
    experiment = load_experiment(path, settings.root)
    markdown, assets, template = report_paths(path)
    if options is None:
        options = recorded_options(markdown) or ReportOptions()
    rows, problems = load_rows(settings.runs, experiment.id)
    for problem in problems:
        warnings.warn(problem, stacklevel=2)
    runs = [_report_run(r) for r in rows]
    curves = load_curves(settings.runs, [r.name for r in runs if r.status in options.statuses])
    search: dict[str, Any] | None = None
    search_images: dict[str, bytes] = {}
    if experiment.search is not None:
        from xpkit.report.search import search_section

        search, search_images = search_section(settings.runs, runs, experiment.search, assets.name)
    report = render_report(
        _experiment_dict(experiment, settings), runs, curves, options,
        assets=assets.name, template=template if template.is_file() else None, search=search,
    )  # fmt: skip
    report.images.update(search_images)
    report.markdown = _options_line(options) + report.markdown
    return report, markdown


def runs_report(settings: Settings, names: list[str], options: ReportOptions) -> Report:
    """An ad-hoc report of the given runs (tables only), for stdout."""
    rows, _ = load_rows(settings.runs)
    by_name = {row.name: row for row in rows}
    runs = [_report_run(by_name[n]) for n in names if n in by_name]
    experiment = {
        "id": ",".join(sorted({r.experiment_id for r in rows if r.name in names})),
        "name": f"{len(runs)} selected runs", "description": "", "file": "-",
        "command": "-", "grid": {}, "tags": [],
    }  # fmt: skip
    return render_report(experiment, runs, {}, options, assets=None)


def write_report(report: Report, markdown: Path) -> list[Path]:
    """Write what changed; remove curve PNGs the report no longer has."""
    written = []
    if _read(markdown) != report.markdown.encode():
        markdown.write_text(report.markdown, encoding="utf-8")
        written.append(markdown)
    for relative, data in report.images.items():
        target = markdown.parent / relative
        if _read(target) != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
    for stale in _stale_curves(report, markdown):
        stale.unlink()
    return written


def stale_files(report: Report, markdown: Path) -> list[Path]:
    """Files on disk that differ from a fresh rendering (for `xp report --check`)."""
    stale = [] if _read(markdown) == report.markdown.encode() else [markdown]
    for relative, data in report.images.items():
        if _read(markdown.parent / relative) != data:
            stale.append(markdown.parent / relative)
    return stale + _stale_curves(report, markdown)


def _stale_curves(report: Report, markdown: Path) -> list[Path]:
    _, assets, _ = report_paths(markdown.with_name(markdown.stem + SUFFIX))
    if not assets.is_dir():
        return []
    wanted = {(markdown.parent / r).resolve() for r in report.images}
    return sorted(p for p in assets.glob(f"{CURVE_PREFIX}*.png") if p.resolve() not in wanted)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
