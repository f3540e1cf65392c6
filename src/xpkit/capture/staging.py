"""Which paths of the working tree differ from the snapshot's kept index, so that a
snapshot stages only those (capture/git.py takes the snapshot; DESIGN.md, "Snapshots
that cost what changed").

`git add -A` walks every folder of the project, whatever changed: git's untracked cache
serves only `git status`. So when a kept index and its record exist, `git status` (the
untracked cache in the kept index: only folders whose mtime changed are read) says which
paths differ from it; they are added by name, and when none differ the tree recorded
with the kept index is the snapshot's tree and nothing more runs. Whatever this module
cannot decide exactly (a changed .gitignore, secret globs with a '/', a failed git)
returns None, and the snapshot stages the whole tree as before."""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path

from xpkit.errors import GitError
from xpkit.settings import XP_TOOL_TIMEOUT
from xpkit.subprocs import run_tool

UNTRACKED_CACHE = ("-c", "core.untrackedCache=true")


class Changes:
    """How the working tree differs from the kept index."""

    __slots__ = ("secrets", "to_add")

    def __init__(self, to_add: list[str], secrets: list[str]) -> None:
        self.to_add = to_add  # paths and wholly untracked folders to stage; no untracked secret
        self.secrets = secrets  # untracked secret-looking files, as the full lookup lists them


def names_only(secret_globs: tuple[str, ...]) -> bool:
    """Whether the secret globs match names alone (as git matches a rule without '/'),
    which fnmatch does as git does; other globs take the full staging."""
    return all("/" not in glob and "\\" not in glob for glob in secret_globs)


def worktree_changes(
    root: Path, env: dict[str, str], status_ignore: Path, inside: list[str],
    secret_globs: tuple[str, ...], watched: tuple[list[str], list[str]] | None = None,
) -> Changes | None:  # fmt: skip
    """What `git add -A` would change in the index `env` names, or None when the full
    staging must decide. `status_ignore` holds the user's global rules and the runs root
    (not the secret globs: untracked secrets are reported, then left out here).
    `watched`: the paths a watcher saw change since the index was kept, and the untracked
    secret files then; git looks at those paths only."""
    paths: list[str] = []
    if watched is not None:
        paths, before = watched
        if not paths:
            return Changes([], before)
    out = _git(root, env, "--literal-pathspecs", *UNTRACKED_CACHE, "-c",
               f"core.excludesFile={status_ignore}", "status", "--porcelain", "-z",
               "--untracked-files=normal", "--no-renames", "--ignore-submodules=dirty",
               "--", *paths)  # fmt: skip
    if out is None:
        return None
    to_add: list[str] = []
    secrets: list[str] = []
    folders: list[str] = []
    for entry in out.split("\0"):
        state, path = entry[:2], entry[3:]
        if not path or state[1:] == " ":  # staged relative to HEAD, as the index has it
            continue
        if os.path.basename(path.rstrip("/")) == ".gitignore":
            return None  # files added under the old rules may now be ignored: start over
        if state != "??":
            to_add.append(path)  # a tracked file edited, deleted, of another type
        elif path.endswith("/"):
            folders.append(path)  # git did not open it: every file in it is untracked
        elif _secret(os.path.basename(path), secret_globs):
            secrets.append(path)
        elif not any(_secret(part, secret_globs) for part in path.split("/")[:-1]):
            to_add.append(path)  # (in a secret-looking folder: ignored by the add's rules)
    if folders:  # their secret-looking files, as the full lookup finds them
        listed = _git(root, env, "--literal-pathspecs", "-c",
                      f"core.excludesFile={status_ignore}", "ls-files", "-z", "--others",
                      "--exclude-standard", "--", *folders,
                      *(f":(exclude){p}" for p in inside))  # fmt: skip
        if listed is None:
            return None
        secrets += [p for p in listed.split("\0") if p and _secret(p.rsplit("/", 1)[-1],
                                                                  secret_globs)]  # fmt: skip
        to_add += folders  # their secret files stay out by the add's ignore rules
    if watched is not None:  # those the watcher saw no change to are still there
        changed = [p.rstrip("/") for p in paths]
        secrets += [s for s in watched[1]
                    if not any(s == p or s.startswith(p + "/") for p in changed)]  # fmt: skip
    return Changes(to_add, sorted(set(secrets)))


def add_paths(root: Path, env: dict[str, str], add_ignore: Path, paths: list[str]) -> bool:
    """Stage `paths` (edits, deletions, new files) as `git add -A` would; False if git
    refused (a file deleted since git status listed it): the caller stages everything."""
    return _git(root, env, "--literal-pathspecs", *UNTRACKED_CACHE, "-c",
                f"core.excludesFile={add_ignore}", "add", "-A", "--pathspec-from-file=-",
                "--pathspec-file-nul", stdin="\0".join(paths)) is not None  # fmt: skip


def _secret(name: str, secret_globs: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, glob) for glob in secret_globs)


def _git(root: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> str | None:
    try:
        proc = run_tool(["git", *args], cwd=root, env={**os.environ, **env}, input=stdin,
                        timeout=XP_TOOL_TIMEOUT.get(), error=GitError, what="git")  # fmt: skip
    except FileNotFoundError:
        return None
    return proc.stdout if proc.returncode == 0 else None
