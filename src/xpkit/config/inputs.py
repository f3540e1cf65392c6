"""What `xp.build` is given, as plain dicts and lists with interpolations still written
out: OmegaConf's DictConfig/ListConfig (imported only when given one), dataclass
configs (Hydra's structured configs: an instance, or the class with its defaults), and
the arguments of the call, merged as Hydra's `instantiate(cfg, *args, **kwargs)` does."""

from __future__ import annotations

import dataclasses
from typing import Any

from xpkit.config.nodes import ARGS, CLASS_PATH, CONVERT, INIT_ARGS, PARTIAL, RECURSIVE
from xpkit.errors import BuildError


def is_omegaconf(spec: Any) -> bool:
    return type(spec).__module__.startswith("omegaconf")


def plain(spec: Any) -> Any:
    if is_omegaconf(spec):
        from omegaconf import OmegaConf, SCMode

        return OmegaConf.to_container(
            spec, resolve=False, throw_on_missing=False, structured_config_mode=SCMode.DICT
        )
    if dataclasses.is_dataclass(spec):
        return _dataclass_config(spec)
    if spec is None or isinstance(spec, (dict, list)):
        return _with_structured(spec)
    if isinstance(spec, tuple):
        return _with_structured(list(spec))
    if hasattr(spec, "keys") and hasattr(spec, "__getitem__"):  # any other Mapping
        return _with_structured({k: spec[k] for k in spec})
    raise BuildError(
        f"a config is a mapping, a list or None, got {type(spec).__name__} {spec!r:.60}"
    )


def _dataclass_config(spec: Any) -> dict[str, Any]:
    if isinstance(spec, type):
        try:
            spec = spec()
        except TypeError as e:
            raise BuildError(
                f"the dataclass {spec.__qualname__} given as a config needs a default for "
                f"every field: {e}"
            ) from None
    return {f.name: _with_structured(getattr(spec, f.name)) for f in dataclasses.fields(spec)}


def _with_structured(value: Any) -> Any:
    """Dataclass instances with a `_target_` field inside a config are configs too (as
    OmegaConf makes them); any other object is a value and stays as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = {f.name for f in dataclasses.fields(value)}
        return _dataclass_config(value) if "_target_" in names else value
    if isinstance(value, dict):
        return {k: _with_structured(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_structured(v) for v in value]
    return value


def with_call_arguments(raw: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Keyword arguments merged deeply into the root (a node's init_args for class_path),
    positional ones replacing `_args_`. A top-level list takes only `_recursive_` and
    `_convert_` (the caller reads them)."""
    kwargs = {k: _with_structured(v) for k, v in kwargs.items()}
    if isinstance(raw, list):
        extra = sorted(set(kwargs) - {RECURSIVE, CONVERT})
        if extra or args:
            what = "positional arguments" if args else ", ".join(extra)
            raise BuildError(f"a top-level list of nodes takes no {what} (only {RECURSIVE})")
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BuildError(f"arguments given to build() need a mapping at the root, got {raw!r:.60}")
    merged = dict(raw)
    if CLASS_PATH in merged:
        own = {k: kwargs.pop(k) for k in list(kwargs) if k == PARTIAL}
        merged[INIT_ARGS] = merge(merged.get(INIT_ARGS) or {}, kwargs)
        merged.update(own)
    else:
        merged = merge(merged, kwargs)
    if args:
        merged[ARGS] = list(args)
    return merged


def merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`given` over `base`, dicts into dicts (OmegaConf.merge's rule); a new `_target_`
    replaces the node it is given for."""
    out = dict(base)
    for key, value in given.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and "_target_" not in value:
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out
