"""JSON paths into config trees: `model.layers[0].dim` (also `model.layers.0.dim`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_TOKEN = re.compile(r"[^.\[\]]+")


class PathError(KeyError):
    """A path that does not exist in the tree; `str()` says where it stops."""

    def __str__(self) -> str:
        return str(self.args[0])


def split(path: str) -> list[str]:
    return _TOKEN.findall(path)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def get(tree: Any, path: str) -> Any:
    node = tree
    walked = ""
    for token in split(path):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PathError(f"'{path}' does not exist (no '{token}' under '{walked or '<root>'}')")
        walked = join(walked, int(token) if isinstance(node, list) and token.isdigit() else token)
    return node


def set_existing(tree: Any, path: str, value: Any) -> None:
    """Replace the value at an existing `path`; a missing path is a PathError."""
    tokens = split(path)
    if not tokens:
        raise PathError("an empty path")
    parent = get(tree, ".".join(tokens[:-1])) if len(tokens) > 1 else tree
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        parent[last] = value
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent[int(last)] = value
    else:
        under = ".".join(tokens[:-1]) or "<root>"
        raise PathError(f"'{path}' does not exist (no '{last}' under '{under}')")


def flatten(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs; empty dicts and lists are leaves so they are not lost."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from flatten(value, join(path, str(key)))
    elif isinstance(tree, list) and tree:
        for index, value in enumerate(tree):
            yield from flatten(value, join(path, index))
    else:
        yield path or "<root>", tree
