"""What snapshots keep between runs, in XP_CACHE_DIR, so that a snapshot costs what
changed (DESIGN.md, "Snapshots that cost what changed"): the snapshot's own git index,
the ignore files its `git add` uses, and the memo of trees already snapshotted. Each is a
cache: missing, stale or unwritable, the snapshot is still right, only slower."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from xpkit.settings import XP_CACHE_DIR
from xpkit.values import sha256

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

SNAPSHOT_REF_PREFIX = "refs/xp/snapshots/"  # = capture.git's (not imported: git imports us)


# Snapshot memos (XP_CACHE_DIR/snapshots): the commit, dirty flag and diff of a tree on a
# HEAD, so that runs of an unchanged working tree (a grid, a rerun) reuse the snapshot
# instead of committing the same tree again and diffing it (4 git processes). A memo is
# trusted only while the snapshot's loose ref exists; the diff never holds a secret file
# (it is the diff every such run records).
def memo_path(common_dir: str, head: str | None, tree: str, tracked: list[str]) -> Path:
    parts = [os.path.realpath(common_dir), head or "", tree, *tracked]
    key = sha256("\0".join(parts).encode()).hexdigest()[:40]
    return XP_CACHE_DIR.get() / "snapshots" / f"{key}.json"


def read_memo(memo: Path, common_dir: str) -> dict[str, Any] | None:
    try:
        known = json.loads(memo.read_bytes())
        ref = os.path.join(common_dir, SNAPSHOT_REF_PREFIX + known["sha"])
        if os.path.isfile(ref) and isinstance(known["diff"], str):
            return dict(known)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_memo(memo: Path, data: dict[str, Any]) -> None:
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(data))
        os.replace(partial, memo)
    except OSError:
        pass  # a cache: the next run snapshots again


# The snapshot's own index, kept between snapshots (XP_CACHE_DIR/snapshot-index): git's
# stat cache and untracked cache stay current there, so `git add -A` re-reads only files
# whose stat changed. The user's index is never written; a copy of it is the start again
# whenever it changes (a `git add -f`, a checkout), since what it tracks decides what a
# snapshot takes. Named by the user's index's inode, size and mtime.
# Ignore rules changed (the global excludes, .git/info/exclude, the secret globs, the runs
# root) start from the user's index again too: a file the old rules let in stays in an
# index whatever the new rules say.
def kept_index_path(common_dir: str, user_index: Path, rules: Path) -> Path | None:
    try:
        st = user_index.stat()
    except OSError:
        return None  # no index yet (no commit): nothing to keep
    try:
        local = Path(common_dir, "info", "exclude").read_bytes()
    except OSError:
        local = b""
    digest = sha256(os.path.realpath(user_index).encode()).hexdigest()[:24]
    ruled = sha256(str(rules).encode() + b"\0" + local).hexdigest()[:12]
    folder = XP_CACHE_DIR.get() / "snapshot-index"
    return folder / f"{digest}.{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{ruled}.index"


def keep_index(tmp_index: str, kept: Path, record: dict[str, Any] | None = None) -> None:
    """The index a snapshot was taken with becomes the next one's start (a rename: the
    kept index is always whole), with `record`: what the snapshot found in it (see
    read_record); those kept for an earlier state of the user's index go."""
    try:
        if record is not None:
            # Taken before the rename: another snapshot's index may replace it after.
            record = {**record, "index": file_id(os.stat(tmp_index))}
        os.replace(tmp_index, kept)
        if record is not None:
            write_memo(kept.with_suffix(".json"), record)
        prefix = kept.name.split(".", 1)[0] + "."
        for other in kept.parent.iterdir():
            if other.name.startswith(prefix) and other not in (kept, kept.with_suffix(".json")):
                other.unlink(missing_ok=True)
    except OSError:
        pass  # a cache


RECORD_KEYS = ("tree", "in_index", "tracked", "untracked", "watch")


def file_id(st: os.stat_result) -> list[int]:
    """Which file a kept index is (inode, size, mtime): it is replaced by renames, never
    written in place, so these name one content."""
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def read_record(kept: Path, copied: list[int], rules: Path) -> dict[str, Any] | None:
    """What the last snapshot found in the kept index (its tree, the secret-looking paths
    it holds, which of them the user tracks, the untracked secret-looking files then, the
    watcher's token), if the record belongs to the very file copied (`copied`: its inode,
    size and mtime; another snapshot may have replaced the kept index since) and was made
    with the same ignore rules."""
    try:
        record = json.loads(kept.with_suffix(".json").read_bytes())
        belongs = record["index"] == copied and record["rules"] == str(rules)
        if belongs and all(key in record for key in RECORD_KEYS):
            return dict(record)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def exclude_files(
    secret_globs: tuple[str, ...], user_file: str | None, inside: list[str]
) -> tuple[Path, Path, Path]:
    """Three ignore files in XP_CACHE_DIR/snapshot-excludes (named by their content): the
    secret globs alone; the user's global excludes file (core.excludesFile, which a
    `-c core.excludesFile=` replaces) and the folders `inside` (the runs root: never part
    of a snapshot), for `git status`; and those with the secret globs, so a snapshot's
    `git add` skips what the user ignores everywhere, the runs, and every
    secret-looking file."""
    if user_file:
        user = Path(user_file).expanduser()
    else:
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        user = Path(config_home) / "git" / "ignore"
    try:
        user_rules = user.read_text(encoding="utf-8", errors="replace")
    except OSError:
        user_rules = ""
    secrets = "".join(f"{glob}\n" for glob in secret_globs)
    folders = "".join(f"/{_escape_rule(rel)}/\n" for rel in inside)
    found = []
    unsecret = f"{user_rules.rstrip()}\n{folders}".lstrip("\n")
    for text in (secrets, unsecret, f"{unsecret}{secrets}"):
        name = sha256(text.encode()).hexdigest()[:24]
        for folder in _ignore_folders():
            path = folder / f"xp-{name}.ignore"
            try:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    folder.mkdir(parents=True, exist_ok=True)
                    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                    partial.write_text(text, encoding="utf-8")
                    os.replace(partial, path)
                break
            except OSError:
                continue  # an unwritable cache folder: the temporary folder
        found.append(path)
    return found[0], found[1], found[2]


def _escape_rule(path: str) -> str:
    """A path as a literal gitignore rule (its wildcards and leading `!`/`#` escaped)."""
    escaped = "".join("\\" + c if c in "*?[\\" else c for c in path)
    return "\\" + escaped if escaped[:1] in ("!", "#") else escaped


def _ignore_folders() -> Iterator[Path]:
    yield XP_CACHE_DIR.get() / "snapshot-excludes"
    yield temp_folder()


def temp_folder() -> Path:
    """The system's temporary folder, the fallback of an unwritable cache folder (tempfile
    is imported only then: with random, ~2 ms of every `xp run`)."""
    import tempfile

    return Path(tempfile.gettempdir())
