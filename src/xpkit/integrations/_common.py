"""What every integration shares: finding the run, turning a framework's hyperparameters
into flat config entries, and its logged values into metrics `run.log` takes."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from xpkit.redact import MASK, looks_secret, secret_option_name

if TYPE_CHECKING:
    from xpkit.tracking import Run

# run.log's own fields: a framework value of that name is kept under another
RESERVED = {"step": "step_", "time": "time_"}
MAX_DEPTH = 8  # nesting kept as dotted keys; anything deeper is one string


def framework_missing(module: str, extra: str, package: str) -> ImportError:
    """The error for an integration whose framework is not installed."""
    return ImportError(
        f"xpkit.integrations.{module} needs {package}: pip install 'xpkit[{extra}]' "
        f"(or pip install {package})"
    )


def attach(run: Run | None) -> Run:
    """The given run, else the current one: the run `xp run` started, or a standalone
    run created now (as `xp.init()` does)."""
    if run is not None:
        return run
    from xpkit.tracking import init

    return init()


def flat_config(params: Any, prefix: str = "") -> dict[str, Any]:
    """Hyperparameters as flat `a.b.c` entries with JSON values: mappings, Namespaces,
    dataclasses, OmegaConf configs and objects with `to_dict()` (Hugging Face configs
    and arguments) are opened; other values become strings; secrets are masked."""
    return dict(_flatten(_opened(params), prefix, 0))


def _opened(value: Any) -> Any:
    """A container's items as a mapping, or the value itself when it is a leaf."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, argparse.Namespace):
        return vars(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=False)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        try:
            opened = to_dict()
        except Exception:  # a to_dict() that needs arguments is not a config's
            return value
        if isinstance(opened, Mapping):
            return opened
    return value


def _flatten(params: Any, prefix: str, depth: int) -> Iterator[tuple[str, Any]]:
    if not isinstance(params, Mapping):
        yield prefix.rstrip(".") or "value", _leaf(prefix, params)
        return
    for key, value in params.items():
        name = f"{prefix}{key}"
        if secret_option_name(str(key)):
            yield name, MASK
            continue
        opened = _opened(value)
        if isinstance(opened, Mapping) and opened and depth < MAX_DEPTH:
            yield from _flatten(opened, name + ".", depth + 1)
        else:
            yield name, _leaf(name, opened)


def _leaf(name: str, value: Any) -> Any:
    if isinstance(value, str):
        return MASK if looks_secret(value) else value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value - value == 0.0 else str(value)  # nan/inf: JSON has none
    if isinstance(value, (list, tuple)) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in value
    ):
        return [_leaf(name, v) for v in value]
    if isinstance(value, Mapping):  # {} or nested past MAX_DEPTH
        return str(value) if value else {}
    text = str(value)
    return MASK if looks_secret(text) else text


def scalars(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values `run.log` can record: numbers (numpy/torch scalars too) and strings.
    Others (histograms, images, multi-element tensors) are left out, not an error."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        name = RESERVED.get(str(key), str(key))
        if isinstance(value, (int, float, str)):
            kept[name] = value
            continue
        try:
            kept[name] = float(value)
        except (TypeError, ValueError, RuntimeError):  # RuntimeError: a torch tensor
            continue
    return kept
