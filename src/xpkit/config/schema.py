"""JSON Schema (draft 2020-12) for a target's config, from its constructor signature,
so editors can validate and complete config files. Annotated nested classes get
their own schema under $defs (recursively; a class refers to itself by $ref)."""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from xpkit.config.nodes import TARGET
from xpkit.config.signatures import is_library, signature_info
from xpkit.config.targets import resolve_target

_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}


def schema_for(target_name: str) -> dict[str, Any]:
    """The JSON Schema of `{"_target_": target_name, ...}` nodes."""
    target = resolve_target(target_name)
    defs: dict[str, Any] = {}
    root = _node_schema(target, _path_of(target, target_name), defs)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **root}
    if defs:
        schema["$defs"] = defs
    return schema


def _path_of(target: Callable[..., Any], fallback: str) -> str:
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    return f"{module}.{name}" if module and name else fallback


def _node_schema(target: Callable[..., Any], path: str, defs: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {TARGET: {"type": "string", "default": path}}
    schema: dict[str, Any] = {"title": path, "type": "object", "properties": properties}
    doc = inspect.getdoc(target)
    if doc:
        schema["description"] = doc.split("\n\n")[0]
    info = signature_info(target)
    if info is None:
        return schema
    signature, hints = info
    required = []
    for name, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            extra = hints.get(name)
            schema["additionalProperties"] = _type_schema(extra, defs) if extra else True
            continue
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue
        prop = _type_schema(hints[name], defs) if name in hints else _untyped(target)
        if param.default is param.empty:
            required.append(name)
        elif _is_json(param.default):
            prop = {**prop, "default": param.default}
        properties[name] = prop
    schema.setdefault("additionalProperties", False)
    schema["required"] = [TARGET, *required]
    return schema


def _untyped(target: Callable[..., Any]) -> dict[str, Any]:
    """Why a parameter without a type hint has no schema, and what xp.build does with it."""
    if is_library(target):
        return {"description": "no type hint in this library: xp.build passes it unchecked"}
    return {"description": "no type hint: xp.build refuses it (strict=True) until annotated"}


def _class_ref(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    key = f"{cls.__module__}.{cls.__qualname__}"
    if key not in defs:
        defs[key] = {}  # placeholder first: a class may refer to itself
        defs[key] = _node_schema(cls, key, defs)
    return {"$ref": f"#/$defs/{key}"}


def _type_schema(annotation: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if annotation is Any:
        return {}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a, defs) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0], defs)}
        items = [_type_schema(a, defs) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items),
                "maxItems": len(items)}  # fmt: skip
    if origin in (list, set, frozenset) or (origin is not None and _is_sequence(origin)):
        return {"type": "array", **({"items": _type_schema(args[0], defs)} if args else {})}
    if origin is dict or (origin is not None and _is_mapping(origin)):
        value = _type_schema(args[1], defs) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value}
    if annotation in (list, tuple):
        return {"type": "array"}
    if annotation is dict:
        return {"type": "object"}
    if inspect.isclass(annotation) and signature_info(annotation) is not None:
        return _class_ref(annotation, defs)
    return {}


def _is_sequence(origin: Any) -> bool:
    import collections.abc as abc

    return isinstance(origin, type) and issubclass(origin, abc.Sequence) and origin is not str


def _is_mapping(origin: Any) -> bool:
    import collections.abc as abc

    return isinstance(origin, type) and issubclass(origin, abc.Mapping)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
