"""A started program dies with its runner (Linux: PR_SET_PDEATHSIG), instead of running
on unobserved and holding GPUs while its run shows `lost`."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from collections.abc import Callable


def with_death_signal(args: list[str], parent: int) -> tuple[list[str], Callable[[], None] | None]:
    """Linux: the command gets SIGTERM if the runner dies (kill -9). Through util-linux's
    `setpriv --pdeathsig` where there is one (the signal survives its exec of the
    command): a preexec_fn would make subprocess fork the whole runner instead of vfork,
    is not safe beside the runner's threads, and needs ctypes (~3 ms a start). Else a
    preexec_fn. Returns the argv to start and the preexec_fn (None: none needed)."""
    if sys.platform != "linux":
        return args, None
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "TERM", "--", *args], None
    return args, parent_death_signal(parent)


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def parent_death_signal(parent: int) -> Callable[[], None]:
    """A preexec_fn that sets the child's death signal (with_death_signal's fallback).
    prctl is looked up here, in the parent, once: importing ctypes in every forked child
    cost ~4 ms a run."""
    prctl = _prctl()

    def arm() -> None:  # pragma: no cover - runs in the child
        if prctl is None:
            return
        try:
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except Exception:
            return
        if os.getppid() != parent:  # the runner died between the fork and this call
            os._exit(143)

    return arm


@functools.cache
def _prctl() -> Callable[[int, int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
