"""Build objects from a config tree, type-checked against signatures before anything
is constructed.

The config is what Hydra or LightningCLI would take (see nodes.py): a dict, a list, an
OmegaConf DictConfig/ListConfig (as `@hydra.main` hands it) or a dataclass instance.
The pipeline: plain containers → interpolations resolved (interpolate.py) → nodes
parsed → every node validated, every problem collected with its JSON path → built
bottom-up. Where Hydra and xpkit differ, xpkit refuses an ill-typed value Hydra passes
on; the README's "Typed configs" lists each difference.
"""

from __future__ import annotations

import collections.abc as abc
import difflib
import functools
import inspect
import logging
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xpkit.config import inputs, paths, typecheck
from xpkit.config.interpolate import MISSING, Unresolved, resolve_interpolations, resolve_tree
from xpkit.config.nodes import RECURSIVE, TARGET, Node, is_node, parse, walk
from xpkit.config.signatures import is_library, signature_info
from xpkit.config.targets import resolve_target
from xpkit.errors import BuildError

__all__ = ["TARGET", "build", "resolve_interpolations", "signature_info", "validate"]
log = logging.getLogger("xpkit.config")


@dataclass
class _Problems:
    strict: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build(spec: Any, /, *args: Any, strict: bool = True, source: str | None = None,
          **kwargs: Any) -> Any:  # fmt: skip
    """Turn a config tree into objects; see the module docstring. `args`/`kwargs` are
    given to the root node as Hydra's `instantiate(cfg, *args, **kwargs)` does:
    keyword arguments are merged into its config, positional ones replace `_args_`.

    Every problem is found before any constructor runs and reported together in one
    BuildError, each line with its JSON path (and `source`, the file, when given).
    """
    where = f" in {source}" if source else ""
    tree, problems = _checked(spec, args, kwargs, strict)
    for message in problems.warnings:
        warnings.warn(f"{message}{where}", stacklevel=2)
    if problems.errors:
        count = len(problems.errors)
        header = f"{count} problem{'s' if count > 1 else ''} in config{where}:"
        raise BuildError("\n".join([header, *(f"  {e}" for e in problems.errors)]))
    return _instantiate(tree)


def validate(spec: Any, *, strict: bool = True) -> list[str]:
    """The problems `build` would report, without constructing anything."""
    return _checked(spec, (), {}, strict)[1].errors


def _checked(spec: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
             strict: bool) -> tuple[Any, _Problems]:  # fmt: skip
    raw = inputs.plain(spec)
    omega = spec if inputs.is_omegaconf(spec) else None
    if args or kwargs:
        raw = inputs.with_call_arguments(raw, args, kwargs)
        if omega is not None:  # the given values, where the node was: its interpolations see both
            from omegaconf import OmegaConf

            omega = OmegaConf.create(raw, parent=omega._get_parent(), flags={"allow_objects": True})
    problems = _Problems(strict)
    resolved = resolve_tree(raw, omega)
    if isinstance(raw, list) and kwargs.get(RECURSIVE) is False:
        _check_data(resolved, "", problems)
        return resolved, problems  # a list of configs, left for the caller to build
    tree = parse(resolved, problems.errors)
    _check_data(tree, "", problems)
    _validate(tree, problems)
    return tree, problems


# --- validation -----------------------------------------------------------------------
def _check_data(value: Any, path: str, problems: _Problems) -> None:
    """Data outside nodes: a failed resolver is a warning (its value is kept as
    written: nothing built uses it), any other failed interpolation an error."""
    if isinstance(value, Unresolved):
        if value.resolver:
            problems.warnings.append(f"{value.message(path)}; kept as written")
        else:
            problems.errors.append(value.message(path))
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_data(v, paths.join(path, str(k)), problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_data(v, paths.join(path, i), problems)


def _validate(tree: Any, problems: _Problems) -> None:
    nodes = walk(tree)
    resolved: dict[str, Callable[..., Any]] = {}
    for node in nodes:  # first every target, so a parent can check what a child yields
        if node.target is not None or node.short:
            continue
        try:
            if node.target_name not in resolved:
                resolved[node.target_name] = resolve_target(node.target_name, node.here)
            node.target = resolved[node.target_name]
        except BuildError as e:
            problems.errors.append(str(e))
            node.failed = True
    for node in nodes:
        if node.target is None and node.short and not node.failed:
            _resolve_short(node, None, problems)  # no parameter says what it should be
        if node.target is not None:
            _validate_node(node, problems)


def _resolve_short(node: Node, base: type | None, problems: _Problems) -> None:
    """A class_path without a module (`Adam`): the subclass of the expected type with
    that name, as jsonargparse finds it."""
    node.failed = True
    if base is None:
        try:
            node.target = resolve_target(node.target_name, node.here)  # a registered name
            node.failed = False
        except BuildError:
            problems.errors.append(
                f"{node.here}: class_path '{node.target_name}' has no module, and no "
                "parameter type says what it is a subclass of; write pkg.module.Class"
            )
        return
    found = typecheck.subclasses_named(base, node.target_name)
    if len(found) == 1:
        node.target, node.failed = found[0], False
        return
    if found:
        names = ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in found))
        problems.errors.append(f"{node.here}: class_path '{node.target_name}' is ambiguous: "
                               f"{names}")  # fmt: skip
        return
    close = difflib.get_close_matches(node.target_name, typecheck.subclass_names(base), n=3)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    problems.errors.append(
        f"{node.here}: no imported subclass of {base.__name__} is named "
        f"'{node.target_name}'{hint}; write pkg.module.Class"
    )


def _validate_node(node: Node, problems: _Problems) -> None:
    assert node.target is not None
    info = signature_info(node.target)
    if info is None:
        return  # a builtin without a signature: nothing to check against
    signature, hints = info
    params, positional, var_positional, var_keyword, named = _parameters(signature)
    errors = problems.errors
    filled = _drop_missing(node, errors)  # said once: not "missing required" again
    for index, value in enumerate(node.args):
        path = node.arg_path(index)
        param = positional[index] if index < len(positional) else var_positional
        if param is None:
            errors.append(
                f"{path}: {node.target_name} takes {len(positional)} positional "
                f"argument{'s' if len(positional) != 1 else ''}, {len(node.args)} given"
            )
            continue
        filled.add(param.name)
        node.args[index] = _check_argument(node, param, hints, value, path, problems)
    for key in list(node.kwargs):
        path = node.arg_paths[key]
        param = named.get(key)
        if key in filled and param is not None:
            errors.append(f"{path}: '{key}' is given twice, in _args_ and by name")
            continue
        if param is None:
            if var_keyword is None:
                errors.append(_unknown_argument(node, key, named, positional))
                continue
            param = var_keyword
        node.kwargs[key] = _check_argument(node, param, hints, node.kwargs[key], path, problems)
    if not node.partial:
        _missing_required(node, params, hints, filled, errors)


@functools.lru_cache(maxsize=1024)
def _parameters(signature: inspect.Signature) -> tuple[
    list[inspect.Parameter], list[inspect.Parameter], inspect.Parameter | None,
    inspect.Parameter | None, dict[str, inspect.Parameter],
]:  # fmt: skip
    """A signature's parameters: all, positional, *args, **kwargs, by name."""
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_positional = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
    var_keyword = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
    named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return params, positional, var_positional, var_keyword, named


def _missing_required(node: Node, params: list[inspect.Parameter], hints: dict[str, Any],
                      filled: set[str], errors: list[str]) -> None:  # fmt: skip
    for param in params:
        if param.default is not param.empty or param.kind in (
            param.VAR_POSITIONAL, param.VAR_KEYWORD,
        ) or param.name in filled or param.name in node.kwargs:  # fmt: skip
            continue
        expected = f" ({typecheck.type_name(hints[param.name])})" if param.name in hints else ""
        how = " (positional-only: give it in _args_)" if param.kind is param.POSITIONAL_ONLY else ""
        errors.append(
            f"{node.here}: missing required argument '{param.name}'{expected} of "
            f"{node.target_name}{how}"
        )


def _drop_missing(node: Node, errors: list[str]) -> set[str]:
    """`???`: a value the config must give. Under _partial_ it is left for the call.
    Returns the names said to be missing."""
    said = set()
    for key in [k for k, v in node.kwargs.items() if isinstance(v, str) and v == MISSING]:
        del node.kwargs[key]
        if not node.partial:
            errors.append(
                f"{node.arg_paths[key]}: missing mandatory value ??? (give it a value, or "
                "set _partial_: true to pass it when calling)"
            )
            said.add(str(key))
    for index, value in enumerate(node.args):
        if isinstance(value, str) and value == MISSING:
            errors.append(f"{node.arg_path(index)}: missing mandatory value ???")
    return said


def _unknown_argument(node: Node, key: str, named: dict[str, Any], positional: list[Any]) -> str:
    path = node.arg_paths[key]
    if any(p.name == key and p.kind is p.POSITIONAL_ONLY for p in positional):
        return f"{path}: '{key}' of {node.target_name} is positional-only: give it in _args_"
    close = difflib.get_close_matches(str(key), list(named), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"{path}: unknown argument '{key}' for {node.target_name}{hint}; valid arguments: "
        f"{', '.join(named) or 'none'}"
    )


def _check_argument(node: Node, param: inspect.Parameter, hints: dict[str, Any], value: Any,
                    path: str, problems: _Problems) -> Any:  # fmt: skip
    annotation = hints.get(param.name)
    if annotation is None:
        if _holds(value, Unresolved):
            return _check_value(value, Any, path, problems)
        if is_library(node.target):
            log.debug("%s: %s parameter '%s' has no type hint: passed through unchecked",
                      path, node.target_name, param.name)  # fmt: skip
        else:
            message = (
                f"{path}: {node.target_name} parameter '{param.name}' has no type hint, so "
                "its value cannot be checked; annotate it, or build with strict=False"
            )
            (problems.errors if problems.strict else problems.warnings).append(message)
        return _check_value(value, Any, path, problems)
    if not node.recursive and _holds_node_dict(value):
        return value  # configs for the callee to build: Hydra passes them unbuilt
    return _check_value(value, annotation, path, problems)


_PLAIN = (int, float, str, bool, type(None))


def _check_value(value: Any, annotation: Any, path: str, problems: _Problems) -> Any:
    errors = problems.errors
    if type(value) in _PLAIN and (annotation is str or type(value) is not str):
        return typecheck.check(value, annotation, path, errors)  # the common case, first
    if isinstance(value, Unresolved):
        errors.append(value.message(path))
        return value
    if isinstance(value, Node):
        _check_node_value(value, annotation, path, problems)
        return value
    if _holds(value, Node) or _holds(value, Unresolved):
        return _check_container(value, annotation, path, problems)
    if isinstance(value, str) and annotation is not Any and annotation is not str:
        as_node = _class_path_string(value, annotation, path, problems)
        if as_node is not None:
            return as_node
    return typecheck.check(value, annotation, path, errors)


def _check_node_value(node: Node, annotation: Any, path: str, problems: _Problems) -> None:
    expected = typecheck.expected_class(annotation) if annotation is not Any else None
    if node.target is None and node.short and not node.failed and expected is not None:
        _resolve_short(node, expected[0], problems)
    if node.target is None:
        return
    if expected is not None and expected[1] and inspect.isclass(node.target):
        node.partial = True  # a class where a callable returning it is asked: jsonargparse
        return
    produced = _produced_type(node)
    if produced is not None and not typecheck.accepts(annotation, produced):
        problems.errors.append(
            f"{path}: expected {typecheck.type_name(annotation)}, got {node.target_name} "
            f"(a {typecheck.type_name(produced)})"
        )


def _class_path_string(text: str, annotation: Any, path: str, problems: _Problems) -> Node | None:
    """A bare class-path string where an instance of a class is expected (LightningCLI:
    `optimizer: torch.optim.Adam`), as a node with no arguments."""
    expected = typecheck.expected_class(annotation)
    if expected is None or typecheck.passes(text, annotation):
        return None
    base, via_callable = expected
    if "." in text or ":" in text:
        try:
            target = resolve_target(text, path)
        except BuildError:
            return None
        found = [target] if inspect.isclass(target) and issubclass(target, base) else []
    else:
        found = typecheck.subclasses_named(base, text)
    if len(found) != 1:
        return None
    node = Node(path, text, {}, {}, partial=via_callable, target=found[0])
    _validate_node(node, problems)
    return node


def _check_container(value: Any, annotation: Any, path: str, problems: _Problems) -> Any:
    """A list or dict holding nodes: each item against the item annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        container: Any = type(value)
    elif origin in (typing.Union, types.UnionType):
        for option in args:
            trial = _Problems(problems.strict)
            _check_container(value, option, path, trial)
            if not trial.errors:
                return _check_container(value, option, path, problems)
        problems.errors.append(
            f"{path}: expected {typecheck.type_name(annotation)}, got {type(value).__name__}"
        )
        return value
    else:
        container = origin or annotation
    accepts = isinstance(container, type) and isinstance(value, container)
    if isinstance(value, list) and (container is tuple or accepts or _is_sequence(container)):
        items = []
        for index, item in enumerate(value):
            if container is tuple and args and args[-1] is not Ellipsis:
                item_annotation = args[index] if index < len(args) else Any
            else:
                item_annotation = args[0] if args else Any
            items.append(_check_value(item, item_annotation, paths.join(path, index), problems))
        return tuple(items) if container is tuple else items
    if isinstance(value, dict) and (accepts or _is_mapping(container)):
        item_type = args[1] if len(args) == 2 else Any
        return {k: _check_value(v, item_type, paths.join(path, str(k)), problems)
                for k, v in value.items()}  # fmt: skip
    problems.errors.append(
        f"{path}: expected {typecheck.type_name(annotation)}, got {type(value).__name__}"
    )
    return value


def _is_sequence(kind: Any) -> bool:
    return kind in (abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)


def _is_mapping(kind: Any) -> bool:
    return kind in (abc.Mapping, abc.MutableMapping)


def _holds(value: Any, kind: type) -> bool:
    if isinstance(value, kind):
        return True
    if isinstance(value, list):
        return any(_holds(v, kind) for v in value)
    if isinstance(value, dict):
        return any(_holds(v, kind) for v in value.values())
    return False


def _holds_node_dict(value: Any) -> bool:
    if is_node(value):
        return True
    if isinstance(value, list):
        return any(_holds_node_dict(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_node_dict(v) for v in value.values())
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
    import typing

    try:
        returned = typing.get_type_hints(node.target).get("return")
    except Exception:
        return None
    return returned if isinstance(returned, type) else None


# --- construction ---------------------------------------------------------------------
def _instantiate(value: Any) -> Any:
    if isinstance(value, Node):
        args = [_instantiate(v) for v in value.args]
        kwargs = {k: _instantiate(v) for k, v in value.kwargs.items()}
        assert value.target is not None  # set by validation, which passed
        if value.partial:
            return functools.partial(value.target, *args, **kwargs)
        try:
            return value.target(*args, **kwargs)
        except Exception as e:
            raise BuildError(
                f"{value.here}: {value.target_name}(...) raised {type(e).__name__}: {e}"
            ) from e
    if isinstance(value, Unresolved):
        return value.text  # a resolver nothing built uses: warned about, kept as written
    if isinstance(value, dict):
        return {k: _instantiate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_instantiate(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_instantiate(v) for v in value)
    return value
