"""Build objects from a config tree, type-checked against signatures before anything
is constructed.

A node `{"_target_": "pkg.mod.Class", ...}` (Hydra) or `{"class_path": "pkg.mod.Class",
"init_args": {...}}` (jsonargparse / LightningCLI) calls its target with the other keys
as keyword arguments; nested nodes are built first. `"_partial_": true` returns a
`functools.partial`. `"${a.b}"` is replaced by the value at `a.b`.

The pipeline: resolve interpolations → parse nodes → validate every node (collecting
all errors, each with its JSON path) → construct bottom-up.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xpkit.config import paths
from xpkit.config.targets import resolve_target
from xpkit.errors import BuildError

TARGET = "_target_"
PARTIAL = "_partial_"
CLASS_PATH = "class_path"
INIT_ARGS = "init_args"
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_RESERVED = re.compile(r"^_[a-z]+_$")


@dataclass
class Node:
    """A parsed target node."""

    path: str
    target_name: str
    kwargs: dict[str, Any]
    arg_paths: dict[str, str]
    partial: bool = False
    target: Callable[..., Any] | None = None


@dataclass
class _Problems:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build(
    spec: Mapping[str, Any], *, strict: bool = True, source: str | None = None
) -> Any:  # fmt: skip
    """Turn a config tree into objects; see the module docstring.

    Every problem is found before any constructor runs and reported together in one
    BuildError, each line with its JSON path (and `source`, the file, when given).
    """
    where = f" in {source}" if source else ""
    tree = parse(resolve_interpolations(dict(spec), source))
    problems = _Problems()
    _validate(tree, problems, strict)
    for message in problems.warnings:
        warnings.warn(f"{message}{where}", stacklevel=2)
    if problems.errors:
        count = len(problems.errors)
        header = f"{count} problem{'s' if count > 1 else ''} in config{where}:"
        raise BuildError("\n".join([header, *(f"  {e}" for e in problems.errors)]))
    return _instantiate(tree)


def validate(spec: Mapping[str, Any], *, strict: bool = True) -> list[str]:
    """The problems `build` would report, without constructing anything."""
    problems = _Problems()
    _validate(parse(resolve_interpolations(dict(spec))), problems, strict)
    return problems.errors


# --- interpolation ---------------------------------------------------------------------
def resolve_interpolations(root: Any, source: str | None = None) -> Any:
    """Replace `${a.b}`: a whole value keeps the referenced value's type; inside a
    longer string it becomes text. Missing paths and cycles name both ends."""
    where = f" ({source})" if source else ""

    def lookup(ref: str, at: str, stack: tuple[str, ...]) -> Any:
        ref = ref.strip()
        if ":" in ref:
            raise BuildError(f"{at or '<root>'}: '${{{ref}}}': resolvers are not supported{where}")
        if ref in stack:
            chain = " -> ".join([*stack, ref])
            raise BuildError(f"{at}: interpolation cycle {chain}{where}")
        try:
            value = paths.get(root, ref)
        except paths.PathError:
            raise BuildError(
                f"{at}: '${{{ref}}}' refers to {ref}, which does not exist{where}"
            ) from None
        return resolve(value, ref, stack)

    def resolve(value: Any, path: str, stack: tuple[str, ...]) -> Any:
        if isinstance(value, str) and "${" in value:
            whole = _INTERPOLATION.fullmatch(value)
            if whole:
                return lookup(whole.group(1), path, (*stack, path))
            return _INTERPOLATION.sub(
                lambda m: str(lookup(m.group(1), path, (*stack, path))), value
            )
        if isinstance(value, dict):
            return {k: resolve(v, paths.join(path, str(k)), stack) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, paths.join(path, i), stack) for i, v in enumerate(value)]
        return value

    return resolve(root, "", ())


# --- parsing ---------------------------------------------------------------------------
def parse(value: Any, path: str = "") -> Any:
    """Turn target dicts into Nodes, recursively; plain data stays as it is."""
    if isinstance(value, dict):
        if TARGET in value:
            return _parse_hydra(value, path)
        if CLASS_PATH in value:
            return _parse_jsonargparse(value, path)
        return {k: parse(v, paths.join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [parse(v, paths.join(path, i)) for i, v in enumerate(value)]
    return value


def _parse_hydra(value: dict[str, Any], path: str) -> Node:
    name = value[TARGET]
    here = path or "<root>"
    if not isinstance(name, str) or not name:
        raise BuildError(f"{paths.join(path, TARGET)}: must be a non-empty string, got {name!r}")
    partial = value.get(PARTIAL, False)
    if not isinstance(partial, bool):
        raise BuildError(f"{paths.join(path, PARTIAL)}: must be true or false, got {partial!r}")
    kwargs: dict[str, Any] = {}
    arg_paths: dict[str, str] = {}
    for key, item in value.items():
        if key in (TARGET, PARTIAL):
            continue
        if _RESERVED.match(key):
            raise BuildError(f"{here}: '{key}' is not supported (supported: {TARGET}, {PARTIAL})")
        arg_paths[key] = paths.join(path, key)
        kwargs[key] = parse(item, arg_paths[key])
    return Node(path, name, kwargs, arg_paths, partial)


def _parse_jsonargparse(value: dict[str, Any], path: str) -> Node:
    name = value[CLASS_PATH]
    here = path or "<root>"
    if not isinstance(name, str) or not name:
        raise BuildError(f"{paths.join(path, CLASS_PATH)}: must be a non-empty string")
    extra = sorted(set(value) - {CLASS_PATH, INIT_ARGS})
    if extra:
        raise BuildError(
            f"{here}: unexpected key(s) {', '.join(extra)} beside class_path; "
            "arguments go under init_args"
        )
    init_args = value.get(INIT_ARGS, {})
    if not isinstance(init_args, dict):
        raise BuildError(f"{paths.join(path, INIT_ARGS)}: must be a mapping, got {init_args!r}")
    base = paths.join(path, INIT_ARGS)
    arg_paths = {k: paths.join(base, k) for k in init_args}
    kwargs = {k: parse(v, arg_paths[k]) for k, v in init_args.items()}
    return Node(path, name, kwargs, arg_paths)


# --- validation ------------------------------------------------------------------------
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


def _nodes(value: Any) -> list[Node]:
    """Every node of the tree, parents before children."""
    if isinstance(value, Node):
        return [value, *(n for item in value.kwargs.values() for n in _nodes(item))]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _nodes(item)]
    if isinstance(value, list):
        return [n for item in value for n in _nodes(item)]
    return []


def _validate(tree: Any, problems: _Problems, strict: bool) -> None:
    nodes = _nodes(tree)
    resolved: dict[str, Callable[..., Any]] = {}
    for node in nodes:  # first every target, so a parent can check what a child yields
        try:
            if node.target_name not in resolved:
                resolved[node.target_name] = resolve_target(node.target_name, node.path or "<root>")
            node.target = resolved[node.target_name]
        except BuildError as e:
            problems.errors.append(str(e))
    for node in nodes:
        if node.target is not None:
            _validate_node(node, problems, strict)


def _validate_node(node: Node, problems: _Problems, strict: bool) -> None:
    here = node.path or "<root>"
    assert node.target is not None
    info = signature_info(node.target)
    if info is None:
        return  # a builtin without a signature: nothing to check against
    signature, hints = info
    params = signature.parameters
    var_keyword = next((p for p in params.values() if p.kind is p.VAR_KEYWORD), None)
    named = {
        n: p for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }  # fmt: skip
    for key in node.kwargs:
        if key not in named and var_keyword is None:
            close = difflib.get_close_matches(key, list(named), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            valid = ", ".join(named) or "none"
            problems.errors.append(
                f"{node.arg_paths[key]}: unknown argument '{key}' for {node.target_name}"
                f"{hint}; valid arguments: {valid}"
            )
    if not node.partial:
        for name, param in named.items():
            if param.default is param.empty and name not in node.kwargs:
                expected = f" ({_type_name(hints[name])})" if name in hints else ""
                problems.errors.append(
                    f"{here}: missing required argument '{name}'{expected} of {node.target_name}"
                )
    for key, value in node.kwargs.items():
        found = named.get(key, var_keyword)
        if found is None:
            continue
        annotation = hints.get(found.name)
        if annotation is None:
            message = (
                f"{node.arg_paths[key]}: {node.target_name} parameter '{key}' has no type "
                "hint, so its value cannot be checked; annotate it, or build with strict=False"
            )
            (problems.errors if strict else problems.warnings).append(message)
            continue
        _check_value(value, annotation, node.arg_paths[key], problems.errors)


def _check_value(value: Any, annotation: Any, path: str, errors: list[str]) -> None:
    if annotation is Any or annotation is inspect.Parameter.empty:
        return
    if isinstance(value, Node):
        produced = _produced_type(value)
        if produced is not None and not _accepts(annotation, produced):
            errors.append(
                f"{path}: expected {_type_name(annotation)}, got {value.target_name} "
                f"(a {_type_name(produced)})"
            )
        return
    if _contains_node(value):
        _check_container(value, annotation, path, errors)
        return
    if isinstance(value, bool) and annotation in (int, float):
        errors.append(f"{path}: expected {_type_name(annotation)}, got bool {value!r}")
        return
    from typeguard import CollectionCheckStrategy, TypeCheckError, check_type

    if isinstance(value, list) and typing.get_origin(annotation) is tuple:
        value = tuple(value)  # JSON has no tuples: a list stands for one
    try:
        check_type(value, annotation, collection_check_strategy=CollectionCheckStrategy.ALL_ITEMS)
    except TypeCheckError:
        errors.append(
            f"{path}: expected {_type_name(annotation)}, got {type(value).__name__} {_short(value)}"
        )
    except Exception:
        return  # an annotation typeguard cannot check (e.g. a non-runtime Protocol)


def _check_container(value: Any, annotation: Any, path: str, errors: list[str]) -> None:
    """A list or dict holding nodes: check each item against the item annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            trial: list[str] = []
            _check_value(value, option, path, trial)
            if not trial:
                return
        errors.append(f"{path}: expected {_type_name(annotation)}, got {type(value).__name__}")
        return
    container = origin or annotation
    accepts = isinstance(container, type) and issubclass(type(value), container)
    if isinstance(value, list) and (container is tuple or accepts):
        for index, item in enumerate(value):
            if container is tuple and args and args[-1] is not Ellipsis:
                item_annotation = args[index] if index < len(args) else Any
            else:
                item_annotation = args[0] if args else Any
            _check_value(item, item_annotation, paths.join(path, index), errors)
    elif isinstance(value, dict) and accepts:
        item_type = args[1] if len(args) == 2 else Any
        for key, item in value.items():
            _check_value(item, item_type, paths.join(path, str(key)), errors)
    else:
        errors.append(f"{path}: expected {_type_name(annotation)}, got {type(value).__name__}")


def _contains_node(value: Any) -> bool:
    if isinstance(value, Node):
        return True
    if isinstance(value, list):
        return any(_contains_node(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_node(v) for v in value.values())
    return False


def _produced_type(node: Node) -> Any:
    """What building `node` yields, when known: its class, a function's annotated
    return type, or functools.partial."""
    if node.target is None:
        return None
    if node.partial:
        return functools.partial
    if inspect.isclass(node.target):
        return node.target
    try:
        returned = typing.get_type_hints(node.target).get("return")
    except Exception:
        return None
    return returned if isinstance(returned, type) else None


def _accepts(annotation: Any, produced: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(option, produced) for option in typing.get_args(annotation))
    import collections.abc as abc

    if annotation is abc.Callable or origin is abc.Callable or annotation is typing.Callable:
        return callable(produced)
    if produced is functools.partial:
        return annotation is functools.partial or origin is functools.partial
    check = origin if isinstance(origin, type) else annotation
    if isinstance(check, type):
        try:
            return issubclass(produced, check)
        except TypeError:  # protocols without runtime support, exotic classes
            return True
    return True


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = repr(annotation).replace("typing.", "")
    return re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- construction ----------------------------------------------------------------------
def _instantiate(value: Any) -> Any:
    if isinstance(value, Node):
        kwargs = {k: _instantiate(v) for k, v in value.kwargs.items()}
        assert value.target is not None  # set by validation, which passed
        if value.partial:
            return functools.partial(value.target, **kwargs)
        try:
            return value.target(**kwargs)
        except Exception as e:
            raise BuildError(
                f"{value.path or '<root>'}: {value.target_name}(...) raised {type(e).__name__}: {e}"
            ) from e
    if isinstance(value, dict):
        return {k: _instantiate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_instantiate(v) for v in value]
    return value
