"""The `metrics_from` and `[[metrics_from_stdout]]` fields of an experiment file: the
framework files read as metrics (execute/harvest_files.py) and the stdout patterns
(execute/harvest.py), validated with errors that say what is valid."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from xpkit.errors import ConfigError
from xpkit.suggest import did_you_mean

METRIC_SOURCES = ("tensorboard", "lightning-csv", "hf-trainer-state", "keras-csv")


def validate_patterns(patterns: list[Any], where: str) -> list[str]:
    """`[[metrics_from_stdout]] pattern = '...'` entries: compiled, with named groups."""
    result = []
    for index, entry in enumerate(patterns):
        if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str):
            raise ConfigError(f"{where}: metrics_from_stdout[{index}] needs pattern = '...'")
        unknown = set(entry) - {"pattern"}
        if unknown:
            raise ConfigError(
                f"{where}: metrics_from_stdout[{index}]: unknown key {sorted(unknown)[0]!r} "
                "(valid: pattern)"
            )
        try:
            compiled = re.compile(entry["pattern"])
        except re.error as e:
            raise ConfigError(
                f"{where}: metrics_from_stdout[{index}].pattern is not a valid regular "
                f"expression: {e}"
            ) from None
        if not set(compiled.groupindex) - {"step"}:
            raise ConfigError(
                f"{where}: metrics_from_stdout[{index}].pattern has no named group for a "
                "metric; write e.g. 'loss (?P<loss>[0-9.e+-]+)' (and optionally (?P<step>\\d+))"
            )
        result.append(entry["pattern"])
    return result


def parse_metrics_from(
    raw: dict[str, Any], fail: Callable[[str, str], ConfigError], where: str
) -> dict[str, Any]:
    sources = raw.get("metrics_from", [])
    valid = ", ".join(repr(s) for s in METRIC_SOURCES)
    if not isinstance(sources, list):
        raise fail("metrics_from", f"'metrics_from' must be a list of {valid}; got {sources!r}")
    for index, source in enumerate(sources):
        if source not in METRIC_SOURCES:
            hint = did_you_mean(str(source), METRIC_SOURCES, "sources")
            raise fail("metrics_from", f"metrics_from[{index}]: unknown source {source!r}{hint}")
    patterns = raw.get("metrics_from_stdout", [])
    if not isinstance(patterns, list):
        raise fail("metrics_from_stdout", "'metrics_from_stdout' must be [[metrics_from_stdout]]")
    stdout = validate_patterns(patterns, where)
    files = list(dict.fromkeys(sources))  # each source once, in the order given
    return {"files": files, "stdout": stdout} if files or stdout else {}
