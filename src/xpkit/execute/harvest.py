"""Metrics from programs that do not use the xpkit API: regular expressions over their
output lines, and TensorBoard event files they write. Points land in metrics.jsonl
and summary.json as if logged with run.log, while the run goes on and at its end."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from xpkit.store import rundir as rd
from xpkit.store.rundir import RunDir

EVENT_FILE = "events.out.tfevents"
MAX_LINE = 64 * 1024  # bytes: a longer output line is not matched against the patterns


class Harvester:
    """Collects metric points for one run and writes them in batches."""

    def __init__(self, run_dir: RunDir, patterns: list[str], tensorboard: bool,
                 search: list[Path]) -> None:  # fmt: skip
        self.run_dir = run_dir
        self.patterns = [re.compile(p) for p in patterns]
        self.counters = [0] * len(self.patterns)
        self.tensorboard = tensorboard
        self.search = search
        self.pending: list[str] = []
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()
        self.partial = b""
        self.overlong = False  # the line being read is over MAX_LINE: it is skipped
        self.loaders: dict[Path, Any] = {}
        # Event files that existed before the run are another run's.
        self.preexisting = set(self._event_files()) if tensorboard else set()

    @property
    def active(self) -> bool:
        return bool(self.patterns) or self.tensorboard

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

    # --- tensorboard ------------------------------------------------------------------
    def _event_files(self) -> list[Path]:
        found = []
        for root in self.search:
            for folder, _, files in os.walk(root):
                found += [Path(folder) / f for f in files if f.startswith(EVENT_FILE)]
        return sorted(found)

    def scan_tensorboard(self) -> None:
        if not self.tensorboard:
            return
        try:
            from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
            from tensorboard.util import tensor_util
        except ImportError:
            self.tensorboard = False
            self._note("metrics_from = ['tensorboard'] needs `pip install 'xpkit[tensorboard]'`")
            return
        for path in self._event_files():
            if path in self.preexisting:
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
                    elif kind == "tensor" and value.metadata.plugin_data.plugin_name in (
                        "scalars",
                        "",
                    ):
                        try:
                            values[value.tag] = float(tensor_util.make_ndarray(value.tensor).item())
                        except (ValueError, TypeError):
                            continue
                if values:
                    self._add(int(event.step), values)

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
        self.scan_tensorboard()
        self.flush()
