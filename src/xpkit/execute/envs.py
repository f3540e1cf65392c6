"""Per-run Python environments: built by uv, keyed by what pins them, on local disk.

A run whose run.json has an `env` (envspec.EnvSpec) executes with `<envs>/<key>/bin`
first on PATH. The key hashes the pinning files' contents (from the run's snapshot),
the Python asked for, this machine's platform and the index settings, so runs of
commits that pin the same packages share one environment and runs that pin other
packages never touch it.

Building: under a per-key lock (flock: the kernel frees it when a builder dies), into
`.building-<key>-...`, then renamed to `<key>` once it holds its manifest. A folder named
`<key>` is therefore always complete; what a killed build leaves is a `.building-`
folder that the next builder of that key (or `xp env gc`) removes. uv's cache sits
beside the environments, on the same filesystem, so uv links instead of copying.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from xpkit.envspec import EnvSpec
from xpkit.errors import RunError
from xpkit.settings import XP_CACHE_DIR, XP_ENVS_DIR
from xpkit.store import rundir as rd
from xpkit.store.locks import pid_alive
from xpkit.store.rundir import RunDir, write_json_atomic

MANIFEST = "xp-env.json"  # written last: an environment without it is not one
USED = "used.log"  # one line per run started in it: time, run folder, run name
SOURCE = "xp-source"  # the pinning files it was built from
BUILDING = ".building-"
INDEX_TIMEOUT = 10.0  # seconds to reach an index before a build gives up on it
UV_HTTP_TIMEOUT = "20"  # uv's own read timeout: a silent index fails, never hangs
FORMAT = 1  # bump when the layout of an environment changes: new keys, new builds
# uv settings from the environment that choose where packages come from: part of the key
UV_SOURCE_VARS = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX",
                  "UV_FIND_LINKS", "UV_NO_INDEX")  # fmt: skip

Say = Callable[[str], None]


def envs_dir() -> Path:
    return XP_ENVS_DIR.get() or XP_CACHE_DIR.get() / "envs"


@dataclass(frozen=True)
class Environment:
    """A built environment on this machine."""

    key: str
    path: Path
    manifest: dict[str, Any]

    def activation(self) -> dict[str, str]:
        """Variables that make a child process run in this environment: its bin first on
        PATH, VIRTUAL_ENV, and xpkit importable when the environment lacks it."""
        path = os.environ.get("PATH", "")
        variables = {
            "VIRTUAL_ENV": str(self.path),
            "PATH": os.pathsep.join(p for p in (str(self.path / "bin"), path) if p),
        }
        if not self.manifest.get("has_xpkit"):
            variables["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(xpkit_shim()), os.environ.get("PYTHONPATH", "")) if p
            )
        return variables

    def record_use(self, run_path: Path, name: str) -> None:
        line = f"{time.time():.0f}\t{run_path}\t{name}\n"
        fd = os.open(self.path / USED, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


# --- the key ---------------------------------------------------------------------------
def platform_tag() -> str:
    libc, version = platform.libc_ver()
    return f"{sysconfig.get_platform()}-{libc}{version}" if libc else sysconfig.get_platform()


def python_tag(spec: EnvSpec) -> str:
    """What Python the key names: the version asked for, or the interpreter running xp."""
    if spec.python:
        return spec.python
    return f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"


def env_key(spec: EnvSpec, contents: dict[str, str]) -> str:
    payload = {
        "format": FORMAT,
        "kind": spec.kind,
        "files": {name: _digest(text) for name, text in sorted(contents.items())},
        "python": python_tag(spec),
        "platform": platform_tag(),
        "indexes": spec.indexes(),
        "find_links": list(spec.find_links),
        "no_index": spec.no_index,
        "uv": {k: os.environ[k] for k in UV_SOURCE_VARS if os.environ.get(k)},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _digest(text: str) -> str:
    # Line endings and trailing blanks change no package: a checkout that rewrites them
    # (git's autocrlf) must find the same environment.
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_contents(spec: EnvSpec, read: Callable[[str], str | None], where: str) -> dict[str, str]:
    """The pinning files' texts; `read` gives None for a file the snapshot lacks."""
    contents = {}
    for name in spec.files:
        text = read(name)
        if text is None:
            raise RunError(f"env file {name} is not in {where}; the environment cannot be built")
        contents[name] = text
    return contents


def folder_reader(root: Path) -> Callable[[str], str | None]:
    def read(name: str) -> str | None:
        try:
            return (root / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    return read


# --- finding and building ------------------------------------------------------------
def find(key: str) -> Environment | None:
    path = envs_dir() / key
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return Environment(key, path, manifest)


def ensure(spec: EnvSpec, contents: dict[str, str], *, say: Say | None = None) -> Environment:
    """The environment of `spec` on this machine, built first if it is not there.
    Concurrent callers (threads or processes) build it once; the others wait for it."""
    key = env_key(spec, contents)
    found = find(key)
    if found is not None:
        return found
    root = envs_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create {root} for Python environments: {e.strerror}") from e
    with key_lock(key):
        found = find(key)
        if found is not None:
            return found
        remove_leftovers(key)
        if say:
            say(f"building the Python environment of {spec.file} ({key}) on this machine")
        started = time.monotonic()
        building = root / f"{BUILDING}{key}-{os.getpid()}-{os.urandom(3).hex()}"
        try:
            manifest = _build(spec, contents, key, building)
            manifest["build_seconds"] = round(time.monotonic() - started, 2)
            write_json_atomic(building / MANIFEST, manifest)
            _move_into_place(building, root / key)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        if say:
            count = len(manifest["packages"])
            say(f"built environment {key} in {manifest['build_seconds']:.1f} s: "
                f"{count} package{'s' * (count != 1)}")  # fmt: skip
        return Environment(key, root / key, manifest)


def _move_into_place(building: Path, target: Path) -> None:
    try:
        os.rename(building, target)
    except OSError:
        if not (target / MANIFEST).is_file():
            raise
        shutil.rmtree(building, ignore_errors=True)  # complete already: the same packages


@contextmanager
def key_lock(key: str) -> Iterator[None]:
    """One builder (or remover) of `key` at a time on this machine."""
    with open(envs_dir() / f".{key}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftovers(key: str | None = None) -> list[Path]:
    """Remove what killed builds of `key` (or of any key whose builder is gone) left.
    With a key, the caller holds its lock, so every such folder is a leftover."""
    removed = []
    for folder in envs_dir().glob(f"{BUILDING}{key or ''}*"):
        owner = folder.name[len(BUILDING) :].split("-")
        if key is None and len(owner) > 1 and owner[1].isdigit() and pid_alive(int(owner[1])):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def uv_binary() -> str:
    try:
        from uv import find_uv_bin  # the `uv` wheel of xpkit[envs]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found is None:
        raise RunError(
            "this run has an env (its Python environment is built with uv) but uv is not "
            "installed on this machine: pip install 'xpkit[envs]' (or put uv on PATH)"
        )
    return found


def _uv_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["UV_CACHE_DIR"] = str(envs_dir() / ".uv-cache")  # same filesystem: hard links
    env.setdefault("UV_HTTP_TIMEOUT", UV_HTTP_TIMEOUT)
    env["UV_NO_PROGRESS"] = "1"
    # Bytecode at install time, as pip does: every run then imports without compiling
    # (on machines that set PYTHONDONTWRITEBYTECODE, every run would compile again).
    env.setdefault("UV_COMPILE_BYTECODE", "1")
    return env


def _source_args(spec: EnvSpec) -> list[str]:
    args = []
    if spec.no_index:
        args.append("--no-index")
    if spec.index_url:
        args += ["--index-url", spec.index_url]
    for url in spec.extra_index_urls:
        args += ["--extra-index-url", url]
    for link in spec.find_links:
        args += ["--find-links", link]
    return args


def _build(spec: EnvSpec, contents: dict[str, str], key: str, folder: Path) -> dict[str, Any]:
    check_sources(spec)
    uv = uv_binary()
    env = _uv_environment()
    python = spec.python or sys.executable
    _uv(uv, ["venv", "--no-config", "--relocatable", "--quiet", "--python", python, str(folder)],
        env, spec)  # fmt: skip
    source = folder / SOURCE
    for name, text in contents.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text, encoding="utf-8")
    interpreter = str(folder / "bin" / "python")
    if spec.kind == "uv.lock":
        project = source / Path(spec.file).parent
        _uv(uv, ["sync", "--no-config", "--frozen", "--no-install-project",
                 "--no-install-workspace", "--project", str(project), "--python", interpreter,
                 *_source_args(spec)], {**env, "UV_PROJECT_ENVIRONMENT": str(folder)},
            spec)  # fmt: skip
    else:
        _uv(uv, ["pip", "install", "--no-config", "--python", interpreter, "-r",
                 str(source / spec.file), *_source_args(spec)], env, spec)  # fmt: skip
    frozen = _uv(uv, ["pip", "freeze", "--no-config", "--python", interpreter], env, spec)
    packages = [line for line in frozen.splitlines() if line and not line.startswith("#")]
    return {
        "key": key,
        "spec": spec.to_json(),
        "python": _venv_version(folder),
        "platform": platform_tag(),
        "packages": packages,
        "has_xpkit": "xpkit" in {re.split(r"[=@ ]", p, maxsplit=1)[0].lower() for p in packages},
        "built": time.time(),
        "host": platform.node(),
        "size_bytes": folder_size(folder),
    }


def _uv(uv: str, args: list[str], env: dict[str, str], spec: EnvSpec) -> str:
    from xpkit.execute.death_signal import with_death_signal

    argv, preexec = with_death_signal([uv, *args], os.getpid())
    proc = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        preexec_fn=preexec,
        check=False,
    )
    if proc.returncode != 0:
        said = "\n".join(proc.stderr.strip().splitlines()[-15:])[-2000:]
        step = " ".join(args[:2]) if args[0] == "pip" else args[0]
        raise RunError(
            f"the Python environment of {spec.file} could not be built (uv {step} failed):\n{said}"
        )
    return proc.stdout


def _venv_version(folder: Path) -> str:
    try:
        for line in (folder / "pyvenv.cfg").read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() in ("version_info", "version"):
                return value.strip()
    except OSError:
        pass
    return ""


def folder_size(folder: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
    return total


# --- sources ---------------------------------------------------------------------------
def shown_url(url: str) -> str:
    """A URL without any user name or password in it."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        parts = parts._replace(netloc=parts.hostname or "")
    return urlunsplit(parts)


def default_index() -> str:
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].split()[0]
    return "https://pypi.org/simple"


def check_sources(spec: EnvSpec) -> None:
    """Every index answers within INDEX_TIMEOUT and every find_links folder exists, so
    an unreachable index fails the build in seconds, naming it, instead of hanging."""
    for link in spec.find_links:
        if "://" not in link and not Path(link).is_dir():
            raise RunError(f"env find_links folder {link} does not exist on this machine")
    indexes = spec.indexes() or ([] if spec.find_links and spec.no_index else [default_index()])
    import urllib.error
    import urllib.request

    for url in indexes:
        if url.startswith("file:"):
            if not Path(urlsplit(url).path).is_dir():
                raise RunError(f"package index {url} does not exist on this machine")
            continue
        try:
            with urllib.request.urlopen(url, timeout=INDEX_TIMEOUT):  # headers only
                pass
        except urllib.error.HTTPError:
            continue  # it answered (a 401 or 404 at the root is still an index that is up)
        except (urllib.error.URLError, OSError, ValueError) as e:
            why = getattr(e, "reason", e)
            raise RunError(
                f"package index {shown_url(url)} is unreachable ({why}; waited at most "
                f"{INDEX_TIMEOUT:.0f} s): the Python environment of {spec.file} cannot be "
                "built. Check env.index_url (or the lab mirror) and the network"
            ) from None


# --- the shim that makes xpkit importable in an environment without it -----------------
def xpkit_shim() -> Path:
    """A folder holding only a link to this xpkit package: put on PYTHONPATH, it lets
    `import xpkit` work in an environment without exposing xp's other packages."""
    import xpkit

    package = Path(xpkit.__file__).resolve().parent
    digest = hashlib.sha256(str(package).encode()).hexdigest()[:12]
    shim = envs_dir() / ".xpkit" / digest
    link = shim / "xpkit"
    if not link.exists():
        shim.mkdir(parents=True, exist_ok=True)
        temporary = shim / f".xpkit.{os.getpid()}.{os.urandom(3).hex()}"
        temporary.symlink_to(package, target_is_directory=True)
        os.replace(temporary, link)
    return shim


# --- a run in its environment ----------------------------------------------------------
def enter(run_dir: RunDir, info: dict[str, Any], tree: Path, say: Say | None) -> dict[str, str]:
    """Build (or find) the environment of a run about to execute from `tree` (its code),
    record it in env.json and its use in the environment; the child's variables."""
    spec = EnvSpec.from_json(info["env"])
    where = f"the run's snapshot {str(info.get('snapshot') or '')[:12]}".rstrip()
    environment = ensure(spec, read_contents(spec, folder_reader(tree), where), say=say)
    environment.record_use(run_dir.path, run_dir.name)
    record(run_dir, environment)
    return environment.activation()


def record(run_dir: RunDir, environment: Environment) -> None:
    """env.json says which environment the run used and its exact packages."""
    captured = run_dir.read_optional(rd.ENV_JSON, {}) or {}
    manifest = environment.manifest
    captured["environment"] = {
        "key": environment.key,
        "path": str(environment.path),
        "file": manifest.get("spec", {}).get("file"),
        "python": manifest.get("python"),
        "packages": manifest.get("packages", []),
    }
    python = captured.setdefault("python", {})
    python["version"] = manifest.get("python") or python.get("version")
    python["executable"] = str(environment.path / "bin" / "python")
    captured["packages"] = {"packages": manifest.get("packages", [])}
    run_dir.write_json(rd.ENV_JSON, captured)
