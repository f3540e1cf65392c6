"""Config nodes: the dicts of a config tree that name something to call.

Hydra: `{"_target_": "pkg.mod.Class" or the class itself, "_args_": [...],
"_partial_": bool, "_recursive_": bool, "_convert_": "none"|"partial"|"object"|"all",
**kwargs}`. jsonargparse / LightningCLI: `{"class_path": "pkg.mod.Class" or "Class",
"init_args": {...}, "dict_kwargs": {...}, "_partial_": bool}`. Everything else is data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xpkit.config import paths
from xpkit.config.interpolate import Unresolved

TARGET = "_target_"
ARGS = "_args_"
PARTIAL = "_partial_"
RECURSIVE = "_recursive_"
CONVERT = "_convert_"
HYDRA_KEYS = (TARGET, ARGS, PARTIAL, RECURSIVE, CONVERT)
CONVERT_MODES = ("none", "partial", "object", "all")
CLASS_PATH = "class_path"
INIT_ARGS = "init_args"
DICT_KWARGS = "dict_kwargs"
JSONARGPARSE_KEYS = (CLASS_PATH, INIT_ARGS, DICT_KWARGS, PARTIAL)
_RESERVED = re.compile(r"^_[a-z]+_$")


@dataclass
class Node:
    """A parsed node. `target` is set when the config gives an object, else by
    validation; `short` marks a class_path without a module, found among the
    subclasses of the type its parameter expects."""

    path: str
    target_name: str
    kwargs: dict[str, Any]
    arg_paths: dict[str, str]
    args: list[Any] = field(default_factory=list)
    partial: bool = False
    recursive: bool = True
    target: Callable[..., Any] | None = None
    short: bool = False
    failed: bool = False  # its target could not be found: said once

    @property
    def here(self) -> str:
        return self.path or "<root>"

    def arg_path(self, index: int) -> str:
        return paths.join(paths.join(self.path, ARGS), index)


def is_node(value: Any) -> bool:
    return isinstance(value, dict) and (TARGET in value or CLASS_PATH in value)


def parse(value: Any, errors: list[str], path: str = "") -> Any:
    """Turn node dicts into Nodes, recursively; data stays as it is. Malformed nodes
    add to `errors` and parse as far as they can."""
    if isinstance(value, dict):
        if TARGET in value:
            return _parse_hydra(value, path, errors)
        if CLASS_PATH in value:
            return _parse_jsonargparse(value, path, errors)
        return {k: parse(v, errors, paths.join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [parse(v, errors, paths.join(path, i)) for i, v in enumerate(value)]
    return value


def _target(name: Any, path: str, key: str, errors: list[str]) -> tuple[str, Any]:
    """(name for messages, the object when the config gives one)."""
    if isinstance(name, str) and name:
        return name, None
    if callable(name) and not isinstance(name, Unresolved):
        module = getattr(name, "__module__", None)
        qualname = getattr(name, "__qualname__", None) or repr(name)
        return (f"{module}.{qualname}" if module else qualname), name
    shown = name.text if isinstance(name, Unresolved) else repr(name)
    errors.append(
        f"{paths.join(path, key)}: must be a dotted name like pkg.module.Class, or a class "
        f"or function, got {shown}"
    )
    return "?", None


def _flag(value: dict[str, Any], key: str, default: bool, path: str, errors: list[str]) -> bool:
    flag = value.get(key, default)
    if isinstance(flag, bool):
        return flag
    errors.append(f"{paths.join(path, key)}: must be true or false, got {flag!r}")
    return default


def _parse_hydra(value: dict[str, Any], path: str, errors: list[str]) -> Node:
    name, target = _target(value[TARGET], path, TARGET, errors)
    partial = _flag(value, PARTIAL, False, path, errors)
    recursive = _flag(value, RECURSIVE, True, path, errors)
    here = path or "<root>"
    if CONVERT in value:
        mode = getattr(value[CONVERT], "value", value[CONVERT])  # hydra's ConvertMode enum
        if not isinstance(mode, str) or mode.lower() not in CONVERT_MODES:
            errors.append(
                f"{paths.join(path, CONVERT)}: must be one of {', '.join(CONVERT_MODES)}, "
                f"got {value[CONVERT]!r}"
            )
    child = (lambda item, at: parse(item, errors, at)) if recursive else (lambda item, at: item)
    args: list[Any] = []
    if ARGS in value:
        given = value[ARGS]
        if isinstance(given, (list, tuple)):
            base = paths.join(path, ARGS)
            args = [child(item, paths.join(base, i)) for i, item in enumerate(given)]
        else:
            errors.append(f"{paths.join(path, ARGS)}: must be a list, got {given!r}")
    kwargs: dict[str, Any] = {}
    arg_paths: dict[str, str] = {}
    for key, item in value.items():
        if key in HYDRA_KEYS:
            continue
        if isinstance(key, str) and key[:1] == "_" and _RESERVED.match(key):
            errors.append(f"{here}: '{key}' is not a Hydra key (they are {', '.join(HYDRA_KEYS)})")
            continue
        arg_paths[key] = paths.join(path, str(key))
        kwargs[key] = child(item, arg_paths[key])
    return Node(path, name, kwargs, arg_paths, args, partial, recursive, target)


def _parse_jsonargparse(value: dict[str, Any], path: str, errors: list[str]) -> Node:
    name, target = _target(value[CLASS_PATH], path, CLASS_PATH, errors)
    here = path or "<root>"
    extra = sorted(str(k) for k in set(value) - set(JSONARGPARSE_KEYS))
    if extra:
        errors.append(
            f"{here}: unexpected key(s) {', '.join(extra)} beside class_path; arguments go "
            f"under init_args (the keys of such a node are {', '.join(JSONARGPARSE_KEYS)})"
        )
    kwargs: dict[str, Any] = {}
    arg_paths: dict[str, str] = {}
    for key in (INIT_ARGS, DICT_KWARGS):
        given = value.get(key, {})
        if given is None:
            continue
        if not isinstance(given, dict):
            errors.append(f"{paths.join(path, key)}: must be a mapping, got {given!r}")
            continue
        base = paths.join(path, key)
        for arg, item in given.items():
            if arg in kwargs:
                errors.append(f"{paths.join(base, arg)}: '{arg}' is also given in init_args")
                continue
            arg_paths[arg] = paths.join(base, str(arg))
            kwargs[arg] = parse(item, errors, arg_paths[arg])
    partial = _flag(value, PARTIAL, False, path, errors)
    short = target is None and isinstance(value[CLASS_PATH], str) and _is_short(name)
    return Node(path, name, kwargs, arg_paths, [], partial, True, target, short)


def _is_short(name: str) -> bool:
    return "." not in name and ":" not in name


def walk(value: Any) -> list[Node]:
    """Every node of a parsed tree, parents before children."""
    found: list[Node] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Node):
            found.append(item)
            stack.extend(reversed([*item.args, *item.kwargs.values()]))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found
