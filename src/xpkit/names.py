"""Experiment IDs, trial allocation, slugs and run names.

A run name is `<expid>_<trial>_<slug>`: grep for the experiment ID finds exactly that
experiment's runs, and the trial number is unique within the experiment.
"""

from __future__ import annotations

import errno
import os
import re
from collections import namedtuple
from pathlib import Path

from xpkit.errors import RunError, StoreError
from xpkit.store.locks import create_exclusive
from xpkit.values import sha256

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 6
ID_PATTERN = re.compile(r"^[a-z0-9]{6}$")
RUN_NAME_PATTERN = re.compile(r"^(?P<expid>[a-z0-9]{6})_(?P<trial>\d{3,})(?:_(?P<slug>.*))?$")
SLUG_MAX = 60
# Hidden bookkeeping folder of a runs root: claims, queue state; never a run.
META_DIR = ".xp"


def new_experiment_id(taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A fresh random experiment ID not in `taken`."""
    while True:
        # 256 % 36 != 0 skews a little toward the first letters; IDs need no more.
        candidate = "".join(ID_ALPHABET[b % len(ID_ALPHABET)] for b in os.urandom(ID_LENGTH))
        if candidate not in taken and not candidate.isdigit():
            return candidate


def command_experiment_id(argv: list[str]) -> str:
    """A stable ID for an ad-hoc command, so repeats of one command group together."""
    normalized = " ".join(" ".join(argv).split())
    number = int.from_bytes(sha256(normalized.encode()).digest()[:8], "big")
    chars = []
    for _ in range(ID_LENGTH):
        number, rest = divmod(number, len(ID_ALPHABET))
        chars.append(ID_ALPHABET[rest])
    return "".join(chars)


def slugify(text: str, limit: int = SLUG_MAX) -> str:
    """A file-name-safe, readable slug: letters, digits, '.', '_', '-' only."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-._")
    slug = re.sub(r"-{2,}", "-", slug)
    return slug[:limit].rstrip("-._") or "run"


def params_slug(prefix: str, params: dict[str, object]) -> str:
    """`resnet18-lr0.1-seed2`; a config path contributes its last part (`optim.lr` → lr).
    A value that looks secret (by its key's name or its shape) is left out."""
    from xpkit.redact import looks_secret, secret_option_name

    parts = [prefix] if prefix else []
    for key, value in params.items():
        if secret_option_name(key) or looks_secret(str(value)):
            continue
        name = key.rsplit(".", 1)[-1]
        shown = _short(value)
        # `l2=0.0` must not read `l20`: a name ending in a digit, or a value that does
        # not start with one, is joined with '_'.
        joint = "_" if name[-1:].isdigit() or not shown[:1].isdigit() else ""
        parts.append(f"{name}{joint}{shown}")
    return slugify("-".join(parts))


def _short(value: object) -> str:
    """Numbers stay numbers: a float keeps its point (`0.0`, `1e-05`), an int has none."""
    if isinstance(value, float):
        text = f"{value:g}"
        return text if any(c in text for c in ".einf") else text + ".0"
    return str(value)


def run_name(expid: str, trial: int, slug: str) -> str:
    return f"{expid}_{trial:03d}_{slug}"


class ParsedName(namedtuple("ParsedName", "expid trial slug")):
    """A run name's parts (expid: str, trial: int, slug: str). A named tuple, not a
    dataclass: `import dataclasses` (~8 ms) is kept off every run's start-up."""

    __slots__ = ()


def parse_run_name(name: str) -> ParsedName | None:
    match = RUN_NAME_PATTERN.match(name)
    if not match:
        return None
    return ParsedName(match["expid"], int(match["trial"]), match["slug"] or "")


def allocate_trial(runs_root: Path, expid: str) -> int:
    """Claim the next trial number of `expid` by exclusive file creation.

    Works across processes and across machines sharing the runs root (O_EXCL create is
    atomic on local filesystems, NFSv3+ and sshfs); no locks, no server. Concurrent
    callers that collide simply move on to the next number.
    """
    claims = runs_root / META_DIR / "trials" / expid
    try:
        claims.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            f"runs root {runs_root} is not writable: {e.strerror}. "
            "Set `runs = ...` in xp.toml or XP_RUNS to a folder you can write."
        ) from e
    key = (str(runs_root), expid)
    trial = _next_trial.get(key) or _highest_trial(runs_root, claims, expid) + 1
    for _ in range(100_000):
        try:
            if not create_exclusive(claims / f"{trial:03d}", f"{os.getpid()}\n"):
                trial += 1
                continue
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise StoreError(
                    f"runs root {runs_root} is not writable: {e.strerror}."
                    " Set `runs = ...` in xp.toml or XP_RUNS to a folder you can write."
                ) from e
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(
                    f"runs root {runs_root} is full ({e.strerror}): free space there; "
                    "no run was created"
                ) from e
            raise
        _next_trial[key] = trial + 1
        return trial
    raise RunError(f"could not claim a trial number for experiment {expid} in {claims}")


# The next trial to try, per (runs root, experiment), after this process's first scan:
# many runs of one experiment in one process (a loop of xp.init(), a 1,000-run grid) must
# not rescan a growing runs root each time. The exclusive claim stays the arbiter.
_next_trial: dict[tuple[str, str], int] = {}


def _highest_trial(runs_root: Path, claims: Path, expid: str) -> int:
    highest = 0
    for entry in os.scandir(claims):
        if entry.name.isdigit():
            highest = max(highest, int(entry.name))
    prefix = expid + "_"
    start = len(prefix)
    for entry in os.scandir(runs_root):  # every run of the experiment: `<expid>_<trial>_...`
        name = entry.name
        if name.startswith(prefix):
            trial = name[start:].split("_", 1)[0]
            if trial.isdigit():
                highest = max(highest, int(trial))
    return highest
