"""`env = ...` in xp.toml or an experiment file: which Python environment a run executes in.

The value names the file that pins the packages (requirements.txt, uv.lock or
pyproject.toml), or is a table with that file and how to get the packages (python,
index_url, extra_index_urls, find_links, no_index). `env = false` in an experiment
file runs it with the interpreter running xp, as without `env`. What is recorded in
run.json is the resolved spec (`EnvSpec.to_json`); execute/envs.py builds it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xpkit.errors import ConfigError

FIELDS = {
    "requirements": "the file that pins the packages: a requirements file, uv.lock or "
    "pyproject.toml (from the project root)",
    "python": "the Python version, e.g. '3.11' (default: the interpreter running xp)",
    "index_url": "the package index, e.g. a lab mirror 'https://pypi.lab.org/simple'",
    "extra_index_urls": "more indexes, searched after index_url",
    "find_links": "folders (or URLs) of wheels to install from",
    "no_index": "true: no index at all, only find_links",
}
KINDS = ("requirements", "uv.lock", "pyproject")
# A line of a requirements file that installs from the project's own folders: the
# environment holds packages, the code comes from the snapshot, so these are refused.
_LOCAL_INSTALL = re.compile(r"^\s*(-e|--editable)\b|^\s*(\.|\.\.|/|file:)")
_INCLUDE = re.compile(r"^\s*(-r|--requirement|-c|--constraint)(\s+|=)(\S+)")
_PYTHON = re.compile(r"^[A-Za-z0-9@.+_-]+$")

Fail = Callable[[str], ConfigError]


@dataclass(frozen=True)
class EnvSpec:
    """A run's environment as recorded in run.json: paths relative to the project root."""

    file: str
    kind: str
    files: tuple[str, ...]  # every file the packages depend on: includes, pyproject + lock
    python: str | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()  # absolute paths or URLs
    no_index: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "files": list(self.files),
            "python": self.python,
            "index_url": self.index_url,
            "extra_index_urls": list(self.extra_index_urls),
            "find_links": list(self.find_links),
            "no_index": self.no_index,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EnvSpec:
        return cls(
            file=str(raw["file"]),
            kind=str(raw["kind"]),
            files=tuple(raw.get("files") or [raw["file"]]),
            python=raw.get("python"),
            index_url=raw.get("index_url"),
            extra_index_urls=tuple(raw.get("extra_index_urls") or ()),
            find_links=tuple(raw.get("find_links") or ()),
            no_index=bool(raw.get("no_index")),
        )

    def indexes(self) -> list[str]:
        """The index URLs a build reaches, in the order uv asks them."""
        if self.no_index:
            return []
        return [u for u in (self.index_url, *self.extra_index_urls) if u]


@dataclass(frozen=True)
class EnvRequest:
    """`env` as written, checked for shape; `resolve` checks it against the project."""

    file: str
    python: str | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False


def kind_of(file: str) -> str:
    name = Path(file).name
    if name == "uv.lock":
        return "uv.lock"
    if name == "pyproject.toml":
        return "pyproject"
    return "requirements"


def parse_env(value: Any, fail: Fail) -> EnvRequest | bool:
    """The shape of `env = ...`: a file, a table, or false (no environment)."""
    if value is False:
        return False
    if isinstance(value, str):
        value = {"requirements": value}
    if not isinstance(value, dict):
        raise fail(
            f"'env' must be a file like \"requirements.txt\", a table "
            f'{{ requirements = "...", python = "3.11" }} or false, got {value!r}'
        )
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        from xpkit.suggest import did_you_mean

        valid = "; ".join(f"{k} ({v})" for k, v in FIELDS.items())
        raise fail(f"env: unknown key '{unknown[0]}'{did_you_mean(unknown[0], FIELDS)}. "
                   f"Valid keys: {valid}")  # fmt: skip
    file = value.get("requirements")
    if not isinstance(file, str) or not file.strip():
        raise fail("env: 'requirements' must name the file that pins the packages, e.g. "
                   "\"requirements.txt\", \"uv.lock\" or \"pyproject.toml\"")  # fmt: skip
    python = value.get("python")
    if python is not None and (not isinstance(python, str) or not _PYTHON.match(python)):
        raise fail(f'env.python must be a version like "3.11", got {python!r}')
    index_url = value.get("index_url")
    if index_url is not None:
        index_url = _url(index_url, "env.index_url", fail)
    extra = tuple(_url(u, f"env.extra_index_urls[{i}]", fail)
                  for i, u in enumerate(_strings(value, "extra_index_urls", fail)))  # fmt: skip
    find_links = _strings(value, "find_links", fail)
    for i, link in enumerate(find_links):
        if "://" in link:
            _url(link, f"env.find_links[{i}]", fail)
    no_index = value.get("no_index", False)
    if not isinstance(no_index, bool):
        raise fail(f"env.no_index must be true or false, got {no_index!r}")
    if no_index and (index_url or extra):
        raise fail("env: no_index = true and an index URL contradict each other; keep one")
    if no_index and not find_links:
        raise fail("env: no_index = true needs find_links (folders of wheels to install from)")
    return EnvRequest(file.strip(), python, index_url, extra, find_links, no_index)


def _strings(value: dict[str, Any], key: str, fail: Fail) -> tuple[str, ...]:
    raw = value.get(key, [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise fail(f"env.{key} must be a list of strings, got {raw!r}")
    return tuple(x.strip() for x in raw)


def _url(url: Any, where: str, fail: Fail) -> str:
    if not isinstance(url, str):
        raise fail(f"{where} must be a URL string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path):
        raise fail(f"{where} = {url!r} is not an http(s):// or file:// URL")
    if parts.password:
        raise fail(
            f"{where} holds a password: it would be recorded with every run. Give the URL "
            "without it and the credentials to uv (~/.netrc, or UV_INDEX_<NAME>_USERNAME / "
            "UV_INDEX_<NAME>_PASSWORD)"
        )
    return url


def resolve(request: EnvRequest, root: Path, fail: Fail) -> EnvSpec:
    """The spec of `request` in the project at `root`: the file exists and is in the
    snapshot, its includes are found, local installs are refused, find_links folders
    become absolute."""
    kind = kind_of(request.file)
    files = [_project_file(request.file, root, fail)]
    if kind == "uv.lock":
        pyproject = str(Path(request.file).parent / "pyproject.toml")
        files.insert(0, _project_file(pyproject, root, fail, why=" (uv.lock needs it beside)"))
    elif kind == "requirements":
        _requirement_files(files[0], root, fail, files)
    find_links = tuple(
        link if "://" in link else str((root / Path(link).expanduser()).resolve())
        for link in request.find_links
    )
    return EnvSpec(
        file=files[-1] if kind == "uv.lock" else files[0],
        kind=kind,
        files=tuple(files),
        python=request.python,
        index_url=request.index_url,
        extra_index_urls=request.extra_index_urls,
        find_links=find_links,
        no_index=request.no_index,
    )


def _project_file(name: str, root: Path, fail: Fail, why: str = "") -> str:
    path = (root / name).resolve()
    try:
        relative = path.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise fail(f"env file {name} is outside the project {root}: the run's snapshot "
                   "holds only the project's files") from None  # fmt: skip
    if not path.is_file():
        raise fail(f"env file {name} does not exist in {root}{why}")
    ignored = subprocess.run(["git", "check-ignore", "-q", relative], cwd=root,
                             capture_output=True, check=False)  # fmt: skip
    if ignored.returncode == 0:
        raise fail(f"env file {name} is ignored by git, so no snapshot would hold it; "
                   "un-ignore it or name another file")  # fmt: skip
    return relative


def _requirement_files(name: str, root: Path, fail: Fail, found: list[str]) -> None:
    """Follow -r/-c includes; refuse lines that install the project's own folders."""
    text = (root / name).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if _LOCAL_INSTALL.match(line):
            raise fail(
                f"{name}:{number}: '{line}' installs a folder of the project; the environment "
                "holds packages and the code comes from the run's snapshot (its root is the "
                "working directory). Remove the line, or put the folder on PYTHONPATH in the "
                "command"
            )
        include = _INCLUDE.match(line)
        if include:
            target = (Path(name).parent / include.group(3)).as_posix()
            relative = _project_file(target, root, fail, why=f" (included by {name}:{number})")
            if relative not in found:
                found.append(relative)
                _requirement_files(relative, root, fail, found)
