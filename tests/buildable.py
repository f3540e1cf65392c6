"""Classes and functions for the config-building tests, importable as `buildable.X`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union


class Module:
    pass


class Encoder(Module):
    def __init__(self, depth: int, width: float = 1.0, act: Literal["relu", "gelu"] = "relu"):
        self.depth, self.width, self.act = depth, width, act


class Decoder(Module):
    def __init__(self, layers: list[int], dropout: Optional[float] = None):
        self.layers, self.dropout = layers, dropout


class Model(Module):
    def __init__(self, encoder: Encoder, heads: list[Module], name: str = "net",
                 extra: dict[str, float] | None = None):  # fmt: skip
        self.encoder, self.heads, self.name, self.extra = encoder, heads, name, extra


class Optimizer:
    def __init__(self, params: list[float], lr: float, momentum: float = 0.0):
        self.params, self.lr, self.momentum = params, lr, momentum


class Trainer:
    def __init__(self, model: Module, optimizer: "Union[Callable, None]" = None, epochs: int = 1):
        self.model, self.optimizer, self.epochs = model, optimizer, epochs


from collections.abc import Callable


def make_encoder(depth: int) -> Encoder:
    return Encoder(depth=depth)


class Untyped:
    def __init__(self, size, device=None):  # type: ignore[no-untyped-def]
        self.size, self.device = size, device


class Exploding:
    def __init__(self, value: int):
        raise ValueError(f"cannot use {value}")


class Flexible:
    def __init__(self, name: str, **options: int):
        self.name, self.options = name, options


@dataclass
class Data:
    path: str
    batch_size: int = 32
    shapes: tuple[int, int] = (32, 32)
    tags: list[str] = field(default_factory=list)


NOT_CALLABLE = 42


# --- for the Hydra and LightningCLI form tests: comparable results ---------------------
@dataclass
class Point:
    x: int
    y: int = 0


@dataclass
class Pair:
    left: Point
    right: Point


@dataclass
class Kernel:
    size: Union[int, tuple[int, int]]
    strides: tuple[int, ...] = (1,)


@dataclass
class Holder:
    """Keeps what it is given, configs included (for _recursive_: false)."""

    inner: Any
    tag: str = ""


class PositionalOnly:
    def __init__(self, a: int, b: int, /, scale: float = 1.0) -> None:
        self.a, self.b, self.scale = a, b, scale

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PositionalOnly) and vars(self) == vars(other)


def total(*values: float, offset: float = 0.0) -> float:
    return sum(values) + offset
