"""Targets: what a config node's `_target_` / `class_path` names. A name registered
with `@xp.register`, `pkg.module.Attr` (the longest importable module prefix) or
`pkg.module:Attr`; errors list close matches."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
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
    raise BuildError(f"{where}: unknown target '{name}': no module named '{top}'{_hint(top)}")


def _import(module_name: str, name: str, where: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise BuildError(f"{where}: unknown target '{name}': {e}{_hint(module_name)}") from e


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


def _hint(module: str) -> str:
    """The project's own modules first (a typo of `models` is not `codecs`)."""
    here = _project_modules()
    close = difflib.get_close_matches(module, here, n=3)
    if close:
        return f"; did you mean {', '.join(close)}?"
    if here:
        shown = ", ".join(here[:10])
        return f"; the modules here are {shown} (run from the folder your code imports from)"
    close = difflib.get_close_matches(module, _top_level_modules(), n=3, cutoff=0.8)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _project_modules() -> list[str]:
    """Modules importable from the current folder: its .py files and packages."""
    found = set()
    for entry in Path.cwd().iterdir():
        if entry.suffix == ".py" and entry.stem.isidentifier():
            found.add(entry.stem)
        elif entry.is_dir() and (entry / "__init__.py").is_file() and entry.name.isidentifier():
            found.add(entry.name)
    return sorted(found)


def _top_level_modules() -> list[str]:
    import pkgutil

    return sorted({m.name for m in pkgutil.iter_modules()} | set(sys.builtin_module_names))


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
