"""Read config files (JSON, YAML 1.2, TOML); errors name the file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xpkit.errors import ConfigError

SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


def load_config(path: Path) -> dict[str, Any]:
    """A config file as a dict. YAML is read with YAML 1.2 semantics (`1e-3` is a
    float, `no` is a string)."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: unknown config format; use one of {', '.join(SUFFIXES)}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from e
    data = parse_config_text(text, kind, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping/object")
    return data


def parse_config_text(text: str, kind: str, where: str) -> Any:
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{where}:{e.lineno}:{e.colno}: invalid JSON: {e.msg} (line {e.lineno}, "
                f"column {e.colno})"
            ) from e
    if kind == "toml":
        from xpkit.settings import read_toml_text

        return read_toml_text(text, where)
    return _load_yaml(text, where)


def _load_yaml(text: str, where: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="safe", pure=True)  # safe: no arbitrary objects; YAML 1.2 core schema
    try:
        return yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = e.problem or e.context or "syntax error"
        raise ConfigError(
            f"{where}:{line}:{column}: invalid YAML: {problem} (line {line}, column {column})"
        ) from e
    except YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from e
