"""Interpolations in config trees, with OmegaConf's meaning: `${a.b}` (from the root),
`${.x}` / `${..x}` (relative to the node holding the value), `${name:args}` (a resolver,
evaluated by OmegaConf, imported only when a config has one) and `???` (a mandatory
value not given). `\\${x}` is the literal text `${x}`.

A whole value `${a.b}` keeps the referenced value's type; inside a longer string it
becomes text. What cannot be resolved becomes an `Unresolved` in the tree, so the
caller decides whether it matters where it is (see build.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xpkit.config import paths
from xpkit.errors import BuildError

MISSING = "???"
_INTERPOLATION = re.compile(r"(?<!\\)\$\{([^}]*)\}")
_RESOLVER = re.compile(r"(?<!\\)\$\{\s*([\w.\-]+)\s*:")


@dataclass(frozen=True)
class Unresolved:
    """An interpolation that could not be resolved: the text as written and why.
    `resolver` is set when a resolver failed: that depends on where the config is
    built (a Hydra app registers `hydra:` and `now:`), a missing path does not."""

    text: str
    reason: str
    resolver: bool = False

    def message(self, path: str) -> str:
        return f"{path or '<root>'}: '{self.text}' {self.reason}"


def resolve_tree(root: Any, omega: Any = None) -> Any:
    """A copy of `root` with interpolations replaced; failures become `Unresolved`.
    `omega`: the OmegaConf object `root` was converted from; its interpolations are
    OmegaConf's to resolve, since they refer to its whole config (`cfg.trainer` may
    name `${model}`, beside it)."""
    return _Resolver(root, omega=omega).tree()


def resolve_interpolations(
    root: Any, source: str | None = None, *, keep_resolvers: bool = False
) -> Any:  # fmt: skip
    """`resolve_tree`, raising one BuildError that lists every failure. With
    `keep_resolvers`, a value that needs a resolver is kept as written (the program
    resolves it where it runs: `${oc.env:HOME}` is the worker's home)."""
    where = f" ({source})" if source else ""
    problems: list[str] = []

    def settle(value: Any, path: str) -> Any:
        if isinstance(value, Unresolved):
            if keep_resolvers and value.resolver:
                return value.text
            problems.append(value.message(path) + where)
            return value.text
        if isinstance(value, dict):
            return {k: settle(v, paths.join(path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [settle(v, paths.join(path, i)) for i, v in enumerate(value)]
        return value

    resolved = settle(_Resolver(root, keep_resolvers=keep_resolvers).tree(), "")
    if problems:
        raise BuildError("\n".join(problems))
    return resolved


class _Resolver:
    def __init__(self, root: Any, keep_resolvers: bool = False, omega: Any = None) -> None:
        self.root = root
        self.keep_resolvers = keep_resolvers
        self.done: dict[str, Any] = {}  # absolute path -> resolved value
        self.given = omega is not None
        self.omega: Any = omega  # the root as an OmegaConf object, made on first need

    def tree(self) -> Any:
        return self.resolve(self.root, "", ())

    def resolve(self, value: Any, path: str, stack: tuple[str, ...]) -> Any:
        if isinstance(value, str):
            return self.resolve_text(value, path, stack) if "${" in value else value
        if isinstance(value, dict):
            return {k: self.resolve(v, paths.join(path, str(k)), stack) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, paths.join(path, i), stack) for i, v in enumerate(value)]
        return value

    def resolve_text(self, text: str, path: str, stack: tuple[str, ...]) -> Any:
        resolver = _RESOLVER.search(text)
        if resolver and self.keep_resolvers:
            return Unresolved(text, "needs a resolver", resolver=True)
        if resolver or self.given:
            return self.by_omegaconf(text, resolver.group(1) if resolver else None, path)
        whole = _INTERPOLATION.fullmatch(text)
        if whole:
            return self.lookup(text, whole.group(1), path, stack)
        failed: list[Unresolved] = []

        def piece(match: re.Match[str]) -> str:
            found = self.lookup(text, match.group(1), path, stack)
            if isinstance(found, Unresolved):
                failed.append(found)
                return match.group(0)
            return str(found)

        joined = _INTERPOLATION.sub(piece, text)
        return failed[0] if failed else joined.replace("\\${", "${")

    def lookup(self, text: str, ref: str, at: str, stack: tuple[str, ...]) -> Any:
        target = absolute(ref.strip(), at)
        if target is None:
            return Unresolved(text, f"goes above the root ({ref.count('.')} dots at {at})")
        if target in self.done:
            return self.done[target]
        if target in stack or target == at:
            chain = " -> ".join([*stack, at, target])
            return Unresolved(text, f"is an interpolation cycle {chain}")
        try:
            value = paths.get(self.root, target)
        except paths.PathError:
            return Unresolved(text, f"refers to {target}, which does not exist")
        if value == MISSING:
            return Unresolved(text, f"refers to {target}, which is ??? (a mandatory value)")
        resolved = self.resolve(value, target, (*stack, at))
        if isinstance(resolved, Unresolved):  # said of this value, not of the one it names
            reason = resolved.reason
            if resolved.text != text:
                reason = f"refers to {target}, which {reason}"
            return Unresolved(text, reason, resolved.resolver)
        if not _holds_unresolved(resolved):
            self.done[target] = resolved
        return resolved

    def by_omegaconf(self, text: str, name: str | None, path: str) -> Any:
        try:
            from omegaconf import OmegaConf
            from omegaconf.errors import OmegaConfBaseException
        except ImportError:
            return Unresolved(
                text, f"uses the resolver '{name}', which needs omegaconf (pip install omegaconf)",
                resolver=True,
            )  # fmt: skip
        if self.omega is None:
            self.omega = OmegaConf.create(self.root, flags={"allow_objects": True})
        try:
            value = OmegaConf.select(self.omega, path, throw_on_missing=True)
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "Unsupported interpolation type" in first:
                reason = (
                    f"uses the resolver '{name}', which is not registered (register it with "
                    "OmegaConf.register_new_resolver, or build inside the app that does)"
                )
            else:
                reason = f"could not be resolved by OmegaConf: {first}"
            return Unresolved(text, reason, resolver=name is not None)
        return value


def absolute(ref: str, at: str) -> str | None:
    """The absolute path of `ref` written in the value at `at`: `.x` is a sibling of
    that value, each further dot one level up; None when that goes above the root."""
    if not ref.startswith("."):
        return ref
    dots = len(ref) - len(ref.lstrip("."))
    tokens = paths.split(at)[:-1]  # the node that holds the value
    up = dots - 1
    if up > len(tokens):
        return None
    base = tokens[: len(tokens) - up]
    rest = paths.split(ref[dots:])
    return ".".join([*base, *rest])


def _holds_unresolved(value: Any) -> bool:
    if isinstance(value, Unresolved):
        return True
    if isinstance(value, dict):
        return any(_holds_unresolved(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_unresolved(v) for v in value)
    return False
