"""Targets: what a config node's `_target_` / `class_path` names. A name registered
with `@xp.register`, `pkg.module.Attr` (the longest importable module prefix) or
`pkg.module:Attr`; errors list close matches."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from xpkit.errors import BuildError

T = TypeVar("T")

# Names given with @xp.register: a process-wide table by nature, like an import.
_registry: dict[str, Callable[..., Any]] = {}


def register(name: str | None = None) -> Callable[[T], T]:
    """Make a class or function buildable as `{"_target_": name}`."""

    def decorator(obj: T) -> T:
        key = name or getattr(obj, "__qualname__", None)
        if not key or not callable(obj):
            raise BuildError(f"@register needs a class or function and a name, got {obj!r}")
        existing = _registry.get(key)
        if existing is not None and existing is not obj:
            raise BuildError(f"name {key!r} is already registered to {_describe(existing)}")
        _registry[key] = obj
        return obj

    return decorator


def registered() -> dict[str, Callable[..., Any]]:
    return dict(_registry)


def resolve_target(name: str, where: str = "<root>") -> Callable[..., Any]:
    """A registered name, `pkg.mod.Attr` or `pkg.mod:Attr`, as a callable."""
    if name in _registry:
        return _registry[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        obj = _getattr_chain(_import(module_name, name, where), attr.split("."), name, where)
    else:
        parts = name.split(".")
        if len(parts) == 1:
            close = difflib.get_close_matches(name, list(_registry), n=3)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            known = ", ".join(sorted(_registry)) or "none"
            raise BuildError(
                f"{where}: unknown target '{name}': not a registered name (registered: "
                f"{known}) and not a dotted import path like pkg.module.Class{hint}"
            )
        obj = _import_longest(parts, name, where)
    if not callable(obj):
        raise BuildError(
            f"{where}: target '{name}' is a {type(obj).__name__}, not a class or function"
        )
    return obj


def _import_longest(parts: list[str], name: str, where: str) -> Any:
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            missing = e.name or ""
            if missing == module_name or module_name.startswith(missing + "."):
                continue  # this prefix is not a module: try a shorter one
            raise BuildError(
                f"{where}: importing '{module_name}' for target '{name}' failed: {e}"
            ) from e
        except Exception as e:
            raise BuildError(
                f"{where}: importing '{module_name}' for target '{name}' failed: "
                f"{type(e).__name__}: {e}"
            ) from e
        return _getattr_chain(module, parts[cut:], name, where)
    top = parts[0]
    close = difflib.get_close_matches(top, _top_level_modules(), n=3)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise BuildError(f"{where}: unknown target '{name}': no module named '{top}'{hint}")


def _import(module_name: str, name: str, where: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        close = difflib.get_close_matches(module_name, _top_level_modules(), n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise BuildError(f"{where}: unknown target '{name}': {e}{hint}") from e


def _getattr_chain(obj: Any, attrs: list[str], name: str, where: str) -> Any:
    for attr in attrs:
        if not hasattr(obj, attr):
            owner = getattr(obj, "__name__", type(obj).__name__)
            public = [a for a in dir(obj) if not a.startswith("_")]
            close = difflib.get_close_matches(attr, public, n=3)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise BuildError(
                f"{where}: unknown target '{name}': '{owner}' has no attribute '{attr}'{hint}"
            )
        obj = getattr(obj, attr)
    return obj


def _top_level_modules() -> list[str]:
    import pkgutil

    return sorted({m.name for m in pkgutil.iter_modules()} | set(sys.builtin_module_names))


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
