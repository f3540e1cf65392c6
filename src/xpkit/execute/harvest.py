"""Metrics from programs that do not use the xpkit API: regular expressions over their
output lines, and the files their frameworks write (execute/harvest_files.py). Points
land in metrics.jsonl and summary.json as if logged with run.log, while the run goes on
and at its end."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

from xpkit.execute.harvest_files import SOURCES, walk
from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

MAX_LINE = 64 * 1024  # bytes: a longer output line is not matched against the patterns


class Harvester:
    """Collects metric points for one run and writes them in batches."""

    def __init__(self, run_dir: RunDir, patterns: list[str], files: list[str],
                 search: list[Path], floor: int = rd.NO_STEP) -> None:  # fmt: skip
        self.run_dir = run_dir
        self.patterns = [re.compile(p) for p in patterns]
        self.counters = [0] * len(self.patterns)
        self.search = search
        self.floor = floor
        self.pending: list[str] = []
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()
        self.partial = b""
        self.overlong = False  # the line being read is over MAX_LINE: it is skipped
        self.sources = [SOURCES[name]() for name in files]
        if self.sources:  # what the files held before the run is another run's
            existing = walk(search)
            for source in self.sources:
                source.start(existing)

    @property
    def active(self) -> bool:
        return bool(self.patterns or self.sources)

    # --- stdout ---------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Output as it arrives; complete lines are matched (\\r counts as a line end,
        for progress bars)."""
        if not self.patterns:
            return
        data = self.partial + chunk
        lines = re.split(rb"[\r\n]", data)
        partial = lines.pop()
        if self.overlong and lines:  # the end of a line too long to be a metrics line
            lines.pop(0)
            self.overlong = False
        for line in lines:
            self._match(line.decode("utf-8", errors="replace"))
        # Output without line ends (a binary dump, a progress bar gone wrong) is not
        # kept whole: that would make every chunk cost as much as all before it.
        if len(partial) > MAX_LINE:
            partial, self.overlong = b"", True
        self.partial = partial

    def _match(self, line: str) -> None:
        for index, pattern in enumerate(self.patterns):
            found = pattern.search(line)
            if not found:
                continue
            values = {}
            for name, text in found.groupdict().items():
                if name == "step" or text is None:
                    continue
                try:
                    values[name] = float(text)
                except ValueError:
                    continue
            if not values:
                continue
            step_text = found.groupdict().get("step")
            step = int(step_text) if step_text and step_text.isdigit() else self.counters[index]
            self.counters[index] = step + 1
            self._add(step, values)

    # --- files the frameworks write ---------------------------------------------
    def scan_files(self) -> None:
        """New rows of the frameworks' own files, at their steps (a later attempt's
        steps up to where the earlier ones ended keep their first values)."""
        if not self.sources:
            return
        files = walk(self.search)
        for source in list(self.sources):
            try:
                for step, values in source.scan(files):
                    if step > self.floor:
                        self._add(step, values)
            except ImportError:
                self.sources.remove(source)
                self._note(
                    f"metrics_from = [{source.name!r}] needs `pip install 'xpkit[tensorboard]'`"
                )

    # --- output -----------------------------------------------------------------------
    def _add(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, "time": round(time.time(), 3), **values}
        with self.lock:
            self.pending.append(json.dumps(record) + "\n")
            self.last.update(values)

    def _note(self, text: str) -> None:
        with open(self.run_dir.file(rd.OUTPUT_LOG), "a", encoding="utf-8") as log:
            log.write(f"xp: {text}\n")

    def flush(self) -> None:
        with self.lock:
            lines, self.pending = self.pending, []
            last = dict(self.last)
        if lines:
            # One O_APPEND write per batch: whole lines, even beside the program's own.
            fd = os.open(self.run_dir.file(rd.METRICS), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, "".join(lines).encode())
            finally:
                os.close(fd)
            summary = self.run_dir.read_optional(rd.SUMMARY_JSON, {}) or {}
            self.run_dir.write_json(rd.SUMMARY_JSON, {**summary, **last})

    def finish(self) -> None:
        if self.partial:
            self._match(self.partial.decode("utf-8", errors="replace"))
            self.partial = b""
        self.overlong = False  # the line being read is over MAX_LINE: it is skipped
        self.scan_files()
        self.flush()
