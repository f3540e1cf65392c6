"""Host facts as small independent collectors.

Each collector returns a dict or raises; `capture_env` skips one that fails with a
warning, so a broken probe never stops a run.
"""

from __future__ import annotations

import getpass
import os
import sys
import warnings
from collections.abc import Callable

from xpkit.redact import redact_env

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any


class CaptureWarning(UserWarning):
    """A collector failed and was skipped."""


# What the platform module says, from os.uname() and sys on Linux: `import platform`
# costs every run ~2 ms, and platform.platform() starts a `uname -p` process (~4 ms).
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython",
                    "jython": "Jython"}  # fmt: skip


def collect_python() -> dict[str, Any]:
    name = sys.implementation.name
    return {
        "version": sys.version.split()[0].rstrip("+"),  # "3.11.7", "3.14.0rc1"
        "implementation": _IMPLEMENTATIONS.get(name, name),
        "executable": sys.executable,
    }


def collect_platform() -> dict[str, Any]:
    if sys.platform != "linux":
        import platform

        system, release, machine = platform.system(), platform.release(), platform.machine()
        return {"system": system, "release": release, "machine": machine,
                "platform": platform.platform()}  # fmt: skip
    uname = os.uname()
    return {
        "system": uname.sysname,
        "release": uname.release,
        "machine": uname.machine,
        "platform": _platform_string(uname),
    }


def _platform_string(uname: os.uname_result) -> str:
    """What `platform.platform()` says on Linux (`Linux-6.1.0-x86_64-with-glibc2.36`),
    without the `uname -p` process it starts to ask for a processor name that Linux
    reports as the machine or "unknown", which it then leaves out."""
    parts = [uname.sysname, uname.release, uname.machine]
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"; musl has none
    except (ValueError, OSError):
        libc = ""
    if libc:
        parts += ["with", libc.replace(" ", "")]
    return "-".join(part for part in parts if part)


def collect_host() -> dict[str, Any]:
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: ask psutil
        import psutil

        memory = psutil.virtual_memory().total
    return {
        "hostname": os.uname().nodename,  # = socket.gethostname(), without importing socket
        "user": getpass.getuser(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory,
    }


def collect_gpus() -> dict[str, Any]:
    from xpkit.capture.gpus import probe

    report = probe().to_json()
    for gpu in report["gpus"]:
        gpu.pop("processes", None)  # other users' PIDs are not this run's business
        gpu.pop("memory_used_mib", None)
    return report


def collect_packages() -> dict[str, Any]:
    """name==version of every installed distribution. Reads the `.dist-info` folder
    names (no METADATA parsing: 100x faster with hundreds of packages); anything
    else falls back to importlib.metadata."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if folder.endswith(".dist-info"):
                name, _, version = folder[: -len(".dist-info")].rpartition("-")
                if name and version:
                    name = name.replace("_", "-")  # folder names escape "-" as "_"
                    found.setdefault(name.lower(), f"{name}=={version}")
                    continue
            if folder.endswith((".dist-info", ".egg-info")):
                from importlib import metadata

                try:
                    dist = metadata.Distribution.at(os.path.join(entry or ".", folder))
                    name = dist.metadata["Name"]
                    if name:
                        found.setdefault(name.lower(), f"{name}=={dist.version}")
                except Exception:
                    continue
    return {"packages": [found[k] for k in sorted(found)]}


_last_vars: tuple[dict[str, str], dict[str, Any]] | None = None


def collect_env_vars() -> dict[str, Any]:
    """The environment, secrets redacted: the very same dict as last time while no
    variable changed (runs in one process then share their env.json's bytes)."""
    global _last_vars
    current = dict(os.environ)
    if _last_vars is None or _last_vars[0] != current:
        _last_vars = (current, {"variables": redact_env(current)})
    return _last_vars[1]


COLLECTORS: dict[str, Callable[[], dict[str, Any]]] = {
    "python": collect_python,
    "platform": collect_platform,
    "host": collect_host,
    "gpus": collect_gpus,
    "packages": collect_packages,
    "env": collect_env_vars,
}


def capture_env(
    collectors: dict[str, Callable[[], dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Run every collector; one that fails is recorded as skipped and warned about."""
    result: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, collect in (collectors or COLLECTORS).items():
        try:
            result[name] = collect()
        except Exception as e:  # a collector must never stop a run
            skipped[name] = f"{type(e).__name__}: {e}"
            warnings.warn(f"env capture '{name}' skipped: {e}", CaptureWarning, stacklevel=2)
    if skipped:
        result["skipped"] = skipped
    return result
