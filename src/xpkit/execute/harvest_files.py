"""Metrics from the files training frameworks write on their own: TensorBoard event
files, Lightning's CSVLogger `metrics.csv`, Hugging Face `trainer_state.json` (its
`log_history`), Keras's CSVLogger file. Only what this run wrote counts: a file that
existed when the run started contributes only the rows added to it since.

Each source is scanned at every heartbeat: it looks only at files whose size or mtime
changed, and remembers which rows it emitted (a file rewritten whole, as CSVLogger does
when a new metric appears, or a new checkpoint's copy of the whole history, gives each
row once)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

Point = tuple[int, dict[str, float]]
SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox"}
MAX_HEADER = 4096  # bytes read to tell whether a .csv/.log/.txt file is a Keras CSVLogger's


def walk(roots: list[Path]) -> list[Path]:
    """Every file under the roots (each once), skipping version control and environments."""
    found: dict[str, Path] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            for name in files:
                path = Path(folder) / name
                found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _number(text: Any) -> float | None:
    if isinstance(text, bool) or text is None or text == "":
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class FileSource:
    """One kind of file: which files are its, how their rows become points."""

    name = ""

    def __init__(self) -> None:
        self.stamps: dict[Path, tuple[int, int] | None] = {}
        self.emitted: set[int] = set()  # fingerprints of rows already turned into points
        self.not_mine: set[Path] = set()

    def claims(self, path: Path) -> bool:
        raise NotImplementedError

    def group(self, path: Path) -> str:
        """Files whose rows are copies of each other's (a row counts once in a group)."""
        return str(path)

    def rows(self, path: Path) -> list[dict[str, Any]]:
        """The file's rows as parsed values (the whole file: rows are deduplicated)."""
        raise NotImplementedError

    def point(self, row: dict[str, Any]) -> Point | None:
        raise NotImplementedError

    def start(self, files: list[Path]) -> None:
        """The files before the run: their rows are another run's."""
        for path in files:
            if self.claims(path):
                self.stamps[path] = _stamp(path)
                group = self.group(path)
                for row in self._read(path):
                    self.emitted.add(_fingerprint(group, row))

    def scan(self, files: list[Path]) -> Iterator[Point]:
        for path in files:
            if path in self.not_mine or not self.claims(path):
                continue
            stamp = _stamp(path)
            if stamp is None or self.stamps.get(path) == stamp:
                continue
            self.stamps[path] = stamp
            group = self.group(path)
            for row in self._read(path):
                key = _fingerprint(group, row)
                if key in self.emitted:
                    continue
                self.emitted.add(key)
                point = self.point(row)
                if point is not None:
                    yield point

    def _read(self, path: Path) -> list[dict[str, Any]]:
        import csv  # here, not at the top: every `xp run` imports this module

        try:
            return self.rows(path)
        except (OSError, ValueError, UnicodeDecodeError, csv.Error):
            return []  # being written, or not this kind after all: next heartbeat


def _fingerprint(group: str, row: dict[str, Any]) -> int:
    # Empty cells do not count: CSVLogger rewrites old rows with a new, empty column.
    return hash((group, *sorted((str(k), str(v)) for k, v in row.items() if v not in ("", None))))


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: the last one may be half written."""
    import csv

    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def _header(path: Path) -> list[str] | None:
    """The first line's fields, or None while the file has no complete first line."""
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER)
    if b"\n" not in head:
        return None
    line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    import csv

    return next(csv.reader([line]), [])


class CsvSource(FileSource):
    """A CSV file with a header; its STEP_COLUMN gives each row's step, the other
    numeric cells are the metrics (empty cells: not logged at that row)."""

    STEP_COLUMN = ""

    def rows(self, path: Path) -> list[dict[str, Any]]:
        return _csv_rows(path)

    def point(self, row: dict[str, Any]) -> Point | None:
        step = _number(row.get(self.STEP_COLUMN))
        values = {k: v for k, v in ((k, _number(t)) for k, t in row.items()
                                    if k != self.STEP_COLUMN) if v is not None and k}  # fmt: skip
        return (int(step), values) if step is not None and values else None


class LightningCsv(CsvSource):
    """`metrics.csv` of Lightning's CSVLogger: a `step` column, empty cells for metrics
    not logged at that row."""

    name = "lightning-csv"
    STEP_COLUMN = "step"

    def claims(self, path: Path) -> bool:
        return path.name == "metrics.csv"


class KerasCsv(CsvSource):
    """Keras's CSVLogger file (any name ending .csv, .log or .txt) whose header starts
    with `epoch` and has no `step` column: step = epoch."""

    name = "keras-csv"
    STEP_COLUMN = "epoch"
    SUFFIXES = (".csv", ".log", ".txt")

    def claims(self, path: Path) -> bool:
        if path.suffix not in self.SUFFIXES or path.name == "metrics.csv":
            return False
        try:
            header = _header(path)
        except OSError:
            return False
        if header is None:
            return False  # asked again once the first line is complete
        if not header or header[0] != "epoch" or "step" in header:
            self.not_mine.add(path)
            return False
        return True


class HfTrainerState(FileSource):
    """`trainer_state.json` of the Hugging Face Trainer (in each `checkpoint-N/` and the
    output folder): each `log_history` entry at its `step`."""

    name = "hf-trainer-state"

    def claims(self, path: Path) -> bool:
        return path.name == "trainer_state.json"

    def group(self, path: Path) -> str:
        # every checkpoint-N/ of an output folder holds the history up to N
        folder = path.parent
        return str(folder.parent if folder.name.startswith("checkpoint-") else folder)

    def rows(self, path: Path) -> list[dict[str, Any]]:
        history = json.loads(path.read_text(encoding="utf-8")).get("log_history")
        return [entry for entry in history or [] if isinstance(entry, dict)]

    def point(self, row: dict[str, Any]) -> Point | None:
        step = row.get("step")
        values = {
            k: float(v)
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        return (step, values) if type(step) is int and values else None


class TensorBoard(FileSource):
    """TensorBoard event files (scalars), read incrementally; files from before the run
    are skipped whole (an event file is never appended to by another writer)."""

    name = "tensorboard"
    SCALARS = ("scalars", "")  # plugins whose tensors are scalars
    PREFIX = "events.out.tfevents"

    def __init__(self) -> None:
        super().__init__()
        self.preexisting: set[Path] = set()
        self.loaders: dict[Path, Any] = {}

    def claims(self, path: Path) -> bool:
        return path.name.startswith(self.PREFIX)

    def start(self, files: list[Path]) -> None:
        self.preexisting = {path for path in files if self.claims(path)}

    def scan(self, files: list[Path]) -> Iterator[Point]:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util

        for path in files:
            if path in self.preexisting or not self.claims(path):
                continue
            loader = self.loaders.get(path)
            if loader is None:
                loader = self.loaders[path] = EventFileLoader(str(path))
            for event in loader.Load():
                values = {}
                for value in event.summary.value:
                    kind = value.WhichOneof("value")
                    if kind == "simple_value":
                        values[value.tag] = float(value.simple_value)
                    elif (
                        kind == "tensor" and value.metadata.plugin_data.plugin_name in self.SCALARS
                    ):
                        try:
                            values[value.tag] = float(tensor_util.make_ndarray(value.tensor).item())
                        except (ValueError, TypeError):
                            continue
                if values:
                    yield int(event.step), values


SOURCES: dict[str, type[FileSource]] = {
    source.name: source for source in (TensorBoard, LightningCsv, HfTrainerState, KerasCsv)
}
