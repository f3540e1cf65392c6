"""Values against type hints (typeguard), with the coercions a JSON/YAML config needs:
a list stands for a tuple (`kernel_size: int | tuple[int, int]` takes `[3, 3]`) or a set,
at any depth. `check` returns the value to pass, or adds an error and returns it."""

from __future__ import annotations

import collections.abc as abc
import functools
import inspect
import re
import types
import typing
from typing import Any

_UNION = (typing.Union, types.UnionType)
_SEQUENCES = (list, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_SETS = (set, frozenset, abc.Set, abc.MutableSet)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


# The scalar hints most parameters have, checked without typeguard (a config of 1,000
# layers has 3,000 of them): what each takes. A bool is no int; an int is a float.
_SCALARS: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,),
                                         bool: (bool,)}  # fmt: skip


def check(value: Any, annotation: Any, path: str, errors: list[str]) -> Any:
    """`value` (plain data: no nodes) checked against `annotation`, coerced."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    simple = _SCALARS.get(annotation)
    if simple is not None:
        if not isinstance(value, simple) or (isinstance(value, bool) and annotation is not bool):
            errors.append(
                f"{path}: expected {type_name(annotation)}, got {type(value).__name__} "
                f"{_short(value)}"
            )
        return value
    if isinstance(value, (list, dict)):
        value = coerce(value, annotation)
    if not passes(value, annotation):
        errors.append(
            f"{path}: expected {type_name(annotation)}, got {type(value).__name__} {_short(value)}"
        )
    return value


def passes(value: Any, annotation: Any) -> bool:
    from typeguard import CollectionCheckStrategy, TypeCheckError, check_type

    try:
        check_type(value, annotation, collection_check_strategy=CollectionCheckStrategy.ALL_ITEMS)
    except TypeCheckError:
        return False
    except Exception:
        return True  # an annotation typeguard cannot check (e.g. a non-runtime Protocol)
    return True


def coerce(value: Any, annotation: Any) -> Any:
    """The value in the container types `annotation` asks for, where JSON has none:
    tuples and sets from lists. The first option of a Union that then passes wins."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _UNION:
        for option in args:
            candidate = coerce(value, option)
            if passes(candidate, option):
                return candidate
        return value
    if isinstance(value, list):
        if annotation is tuple or origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(coerce(v, args[0]) for v in value)
            if args and len(args) == len(value):
                return tuple(coerce(v, a) for v, a in zip(value, args))
            return tuple(value)
        if annotation in _SETS or origin in _SETS:
            item = args[0] if args else Any
            try:
                return {coerce(v, item) for v in value}
            except TypeError:  # unhashable items: leave it for the check to refuse
                return value
        if args and (annotation in _SEQUENCES or origin in _SEQUENCES):
            return [coerce(v, args[0]) for v in value]
    if isinstance(value, dict) and origin in _MAPPINGS and len(args) == 2:
        return {k: coerce(v, args[1]) for k, v in value.items()}
    return value


def expected_class(annotation: Any) -> tuple[type, bool] | None:
    """The class a parameter expects an instance of, and whether through a callable
    that returns it (`Callable[[Iterable], Optimizer]`, LightningCLI's OptimizerCallable):
    what a class_path or a bare class-path string stands for there."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _UNION:
        options = [found for a in args if a is not type(None) and (found := expected_class(a))]
        return options[0] if len(options) == 1 else None
    if origin is abc.Callable and args and inspect.isclass(args[-1]):
        return args[-1], True
    if inspect.isclass(annotation) and not issubclass(annotation, (str, int, float, bytes)):
        if annotation.__module__ in ("builtins", "typing", "collections.abc"):
            return None
        return annotation, False
    return None


def subclasses_named(base: type, name: str) -> list[type]:
    """The imported subclasses of `base` (itself included) whose name is `name`."""
    found, seen, todo = [], set(), [base]
    while todo:
        klass = todo.pop()
        if klass in seen:
            continue
        seen.add(klass)
        if klass.__name__ == name:
            found.append(klass)
        try:
            todo.extend(klass.__subclasses__())
        except TypeError:  # `type` itself
            continue
    return found


def subclass_names(base: type) -> list[str]:
    names: set[str] = set()
    todo = [base]
    while todo and len(names) < 2000:
        klass = todo.pop()
        if klass.__name__ not in names:
            names.add(klass.__name__)
            try:
                todo.extend(klass.__subclasses__())
            except TypeError:
                continue
    return sorted(names)


def accepts(annotation: Any, produced: Any) -> bool:
    """Whether what a node yields (a class, a return type, functools.partial) can be
    given where `annotation` is expected; unknown cases are accepted."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in _UNION:
        return any(accepts(option, produced) for option in typing.get_args(annotation))
    if annotation is abc.Callable or origin is abc.Callable or annotation is typing.Callable:
        return callable(produced)
    if produced is functools.partial:
        return annotation is functools.partial or origin is functools.partial
    kind = origin if isinstance(origin, type) else annotation
    if isinstance(kind, type):
        try:
            return issubclass(produced, kind)
        except TypeError:  # protocols without runtime support, exotic classes
            return True
    return True


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = repr(annotation).replace("typing.", "").replace("collections.abc.", "")
    return re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
