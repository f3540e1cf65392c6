"""What a target accepts: its signature, resolved type hints, and whether it is a
library's (whose unannotated parameters are passed through unchecked) or the project's
own (where strict checking applies)."""

from __future__ import annotations

import functools
import inspect
import sys
import sysconfig
import typing
from pathlib import Path
from typing import Any


def signature_info(target: Any) -> tuple[inspect.Signature, dict[str, Any]] | None:
    """The signature and resolved type hints of a target, or None if it has none.
    Cached: a config of 1,000 layers has one Layer signature."""
    try:
        return _cached_signature_info(target)
    except TypeError:  # unhashable callable
        return _signature_info(target)


@functools.lru_cache(maxsize=1024)
def _cached_signature_info(target: Any) -> tuple[inspect.Signature, dict[str, Any]] | None:
    return _signature_info(target)


def _signature_info(target: Any) -> tuple[inspect.Signature, dict[str, Any]] | None:
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    function = target.__init__ if inspect.isclass(target) else target
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: use what is evaluated
        hints = {k: v for k, v in getattr(function, "__annotations__", {}).items()
                 if not isinstance(v, str)}  # fmt: skip
    return signature, hints


def is_library(target: Any) -> bool:
    """Whether the code that declares the target's parameters is installed (site-packages)
    or Python's own, rather than the project's. For a class: where its __init__ (or
    __new__) is defined, so a project class that inherits torch's __init__ is torch's."""
    module_name = _declaring_module(target)
    return _is_library_module(module_name) if module_name else True


def _declaring_module(target: Any) -> str | None:
    if inspect.isclass(target):
        for klass in target.__mro__:
            if "__init__" in vars(klass) or "__new__" in vars(klass):
                return getattr(klass, "__module__", None)
        return None
    return getattr(target, "__module__", None)


@functools.lru_cache(maxsize=256)
def _is_library_module(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return True  # builtin or namespace module
    path = Path(file).resolve()
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return True
    return any(path.is_relative_to(root) for root in _library_roots())


@functools.lru_cache(maxsize=1)
def _library_roots() -> tuple[Path, ...]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    found = {Path(p).resolve() for key in names if (p := sysconfig.get_paths().get(key))}
    return tuple(found)
