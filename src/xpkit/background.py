"""Work started in a thread and taken later: what xpkit overlaps with a wait (the
snapshot's git processes with `xp run`'s imports, the next run's directory with the
program of the run before it)."""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")


def in_background(work: Callable[..., T], *args: Any, **kwargs: Any) -> Callable[[], T]:
    """Start work(*args, **kwargs) in a thread; the returned function waits for it and
    returns its value or raises its exception (in the caller's thread)."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, work(*args, **kwargs)))
        except BaseException as e:  # handed to the waiting thread
            box.append((False, e))

    thread = threading.Thread(target=target, name=f"xp-{work.__name__}", daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    return result
