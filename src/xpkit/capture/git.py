"""Code provenance: HEAD, branch, remote, and an immutable snapshot of the working tree.

The snapshot is a commit of tracked + staged + untracked-not-ignored files made through
a temporary index, so the user's branch, index, stash and files stay byte-identical.
It is kept alive under `refs/xp/snapshots/<sha>`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xpkit.errors import GitError
from xpkit.settings import XP_TOOL_TIMEOUT
from xpkit.subprocs import run_tool

SNAPSHOT_REF_PREFIX = "refs/xp/snapshots/"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
INLINE_LIMIT = 1024 * 1024  # untracked files above this are listed in git.diff, not inlined
DIFF_NEW_FILES_LIMIT = 8 * 1024 * 1024  # new files inlined per git.diff; the rest are listed
# Files that look like credentials: never in a snapshot, a diff or a bundle (gitleaks'
# and W&B's lists agree on these); `secret_globs` in xp.toml adds more.
SECRET_GLOBS = (
    ".env*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc",
    ".pgpass", "credentials*.json", "*.p12", "*.pfx", "*.keystore", "*.jks",
)  # fmt: skip
_IDENTITY = {
    "GIT_AUTHOR_NAME": "xpkit",
    "GIT_AUTHOR_EMAIL": "xpkit@localhost",
    "GIT_COMMITTER_NAME": "xpkit",
    "GIT_COMMITTER_EMAIL": "xpkit@localhost",
}


def git(root: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run git in `root` and return its stdout without the trailing newline."""
    try:
        proc = run_tool(
            ["git", *args],
            cwd=root,
            env={**os.environ, **env} if env else None,
            timeout=XP_TOOL_TIMEOUT.get(),
            error=GitError,
            what=f"git {args[0]}",
        )
    except FileNotFoundError as e:
        raise GitError("git is not installed or not on PATH; xpkit needs git >= 2.25") from e
    if check and proc.returncode != 0:
        raise GitError(f"`git {' '.join(args)}` failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def repo_root(path: Path) -> Path:
    """The top level of the git repository containing `path`, or a clear error."""
    try:
        out = run_tool(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=path,
            timeout=60,
            error=GitError,
            what="git rev-parse",
        )
    except FileNotFoundError as e:
        raise GitError("git is not installed or not on PATH; xpkit needs git") from e
    if out.returncode != 0:
        raise GitError(
            f"{path} is not inside a git repository. xpkit ties every run to the exact code it "
            "ran, so it needs one: run `git init && git add -A && git commit -m init`, or pass "
            "--no-git to run without code provenance."
        )
    return Path(out.stdout.strip())


@dataclass
class Snapshot:
    """What `git.json` records, plus the diff text for `git.diff`."""

    commit: str | None
    branch: str | None
    remote: str | None
    dirty: bool
    snapshot: str
    not_inlined: list[dict[str, Any]] = field(default_factory=list)
    kept_out: list[str] = field(default_factory=list)  # secret-looking files left out
    tracked_secrets: list[str] = field(default_factory=list)  # of those, tracked by git
    diff: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["diff"]
        return data


def secret_pathspecs(globs: tuple[str, ...]) -> list[str]:
    """git pathspecs for gitignore-style globs: a glob without '/' matches at any depth."""
    return [f":(glob){g.lstrip('/')}" if "/" in g else f":(glob)**/{g}" for g in globs]


def take_snapshot(
    root: Path, exclude: tuple[Path, ...] = (), secret_globs: tuple[str, ...] = SECRET_GLOBS
) -> Snapshot:
    """Commit the working tree as it is now, without touching the user's index or HEAD.
    Files matching `secret_globs` are left out (tracked ones too: the snapshot drops
    them) and listed in `kept_out`."""
    # One rev-parse for index path, HEAD, its tree and branch; it fails without commits.
    facts = git(
        root, "rev-parse", "--git-path", "index", "HEAD", "HEAD^{tree}", "--abbrev-ref", "HEAD",
        check=False,
    ).splitlines()  # fmt: skip
    head: str | None = None
    head_tree: str | None = None
    if len(facts) == 4:
        index_text, head, head_tree, branch_name = facts
        branch = None if branch_name == "HEAD" else branch_name  # "HEAD": detached
    else:  # no commits yet
        index_text = git(root, "rev-parse", "--git-path", "index")
        branch = git(root, "symbolic-ref", "-q", "--short", "HEAD", check=False) or None
    remote = _remote_url(root)
    index = Path(index_text)
    index = index if index.is_absolute() else root / index
    fd, tmp_index = tempfile.mkstemp(prefix="xp-index-")
    os.close(fd)
    try:
        if index.exists():
            shutil.copyfile(index, tmp_index)  # keeps git's stat cache: add -A stays fast
        else:
            os.unlink(tmp_index)
        env = {"GIT_INDEX_FILE": tmp_index, **_IDENTITY}
        secrets = secret_pathspecs(secret_globs)
        pathspec = ["."] + [f":(exclude,literal){p}" for p in _unignored(root, exclude)]
        git(root, "add", "-A", "--", *pathspec, *(":(exclude," + s[2:] for s in secrets), env=env)
        kept_out, tracked = _secret_files(root, secrets, env)
        if (root / ".gitmodules").is_file():
            kept_out += _snapshot_submodules(root, env, secret_globs)
        if tracked:
            literal = [f":(literal){p}" for p in tracked]
            git(root, "rm", "-q", "--cached", "--ignore-unmatch", "--", *literal, env=env)
        tree = git(root, "write-tree", env=env)
    finally:
        if os.path.exists(tmp_index):
            os.unlink(tmp_index)
    dirty = tree != head_tree
    if dirty and tracked and head_tree:  # dropping tracked secrets alone is not a change
        excludes = [f":(exclude,literal){p}" for p in tracked]
        dirty = bool(git(root, "diff", "--name-only", head_tree, tree, "--", ".", *excludes))
    if tree != head_tree or head is None:
        message = f"xp snapshot of {branch or 'detached HEAD'} at {head[:12] if head else 'root'}"
        parents = ["-p", head] if head else []
        sha = git(root, "commit-tree", tree, *parents, "-m", message, env=_IDENTITY)
    else:
        sha = head  # a clean tree is exactly HEAD
    git(root, "update-ref", SNAPSHOT_REF_PREFIX + sha, sha)
    snap = Snapshot(commit=head, branch=branch, remote=remote, dirty=dirty, snapshot=sha,
                    kept_out=kept_out, tracked_secrets=tracked)  # fmt: skip
    if dirty:
        snap.not_inlined = _large_or_binary_new_files(root, head or EMPTY_TREE, sha)
        snap.diff = _diff(root, head or EMPTY_TREE, sha, snap.not_inlined, tracked)
    return snap


def submodule_paths(root: Path) -> list[str]:
    """The submodule paths the working tree's .gitmodules names."""
    out = git(root, "config", "-z", "-f", ".gitmodules", "--get-regexp", r"^submodule\..*\.path$",
              check=False)  # fmt: skip
    return [record.split("\n", 1)[1] for record in out.split("\0") if "\n" in record]


def _snapshot_submodules(
    root: Path, env: dict[str, str], secret_globs: tuple[str, ...]
) -> list[str]:
    """Snapshot each checked-out submodule as it is (its uncommitted changes too) and
    record that commit in the superproject's snapshot; returns what they kept out."""
    kept = []
    for path in submodule_paths(root):
        if not (root / path / ".git").exists():
            continue  # not checked out here: the snapshot keeps the recorded commit
        inner = take_snapshot(root / path, secret_globs=secret_globs)
        git(root, "update-index", "--cacheinfo", f"160000,{inner.snapshot},{path}", env=env)
        kept += [f"{path}/{p}" for p in inner.kept_out]
    return kept


def _secret_files(root: Path, specs: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
    """(every file matching the secret pathspecs that git would take, the tracked ones)."""
    listing = git(root, "ls-files", "-z", "-t", "--cached", "--others", "--exclude-standard",
                  "--", *specs, env=env)  # fmt: skip
    found: dict[str, bool] = {}
    for record in listing.split("\0"):
        if len(record) > 2:
            found[record[2:]] = found.get(record[2:], False) or record[0] != "?"
    return sorted(found), sorted(p for p, is_tracked in found.items() if is_tracked)


def _unignored(root: Path, paths: tuple[Path, ...]) -> list[str]:
    """The paths inside the project that git would otherwise add. Naming an ignored
    path in a pathspec, even to exclude it, makes `git add` fail."""
    rels = []
    for path in paths:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        if str(rel) != "." and path.exists():
            rels.append(str(rel))
    if not rels:
        return []
    ignored = git(root, "check-ignore", "--", *rels, check=False).splitlines()
    return [r for r in rels if r not in ignored]


def _remote_url(root: Path) -> str | None:
    """origin's URL, else the first remote's, else None."""
    lines = git(root, "config", "--get-regexp", r"^remote\..*\.url$", check=False).splitlines()
    urls = dict(line.split(" ", 1) for line in lines if " " in line)
    return urls.get("remote.origin.url") or next(iter(urls.values()), None)


def _large_or_binary_new_files(root: Path, base: str, sha: str) -> list[dict[str, Any]]:
    """Files added by the snapshot that are binary, over INLINE_LIMIT, or beyond
    DIFF_NEW_FILES_LIMIT of new text in all (a sweep's outputs must not make every
    git.diff hundreds of megabytes)."""
    numstat = git(root, "diff", "--no-renames", "--diff-filter=A", "--numstat", "-z", base, sha)
    listed = []
    inlined = 0
    for record in numstat.split("\0"):
        parts = record.split("\t")
        if len(parts) != 3:
            continue
        path = parts[2]
        try:
            size = (root / path).stat().st_size
        except OSError:
            size = 0
        binary = parts[0] == "-"
        if binary or size > INLINE_LIMIT:
            listed.append({"path": path, "bytes": size, "reason": "binary" if binary else "large"})
        elif inlined + size > DIFF_NEW_FILES_LIMIT:
            listed.append({"path": path, "bytes": size, "reason": "over the diff's limit"})
        else:
            inlined += size
    return listed


def _diff(
    root: Path, base: str, sha: str, not_inlined: list[dict[str, Any]], secrets: list[str]
) -> str:
    """The snapshot against its base; a tracked secret file the snapshot dropped is not
    shown (its removal would print its content)."""
    excludes = [f":(exclude,literal){p}" for p in [*(f["path"] for f in not_inlined), *secrets]]
    text = git(root, "diff", "--no-color", "--no-ext-diff", "--submodule=diff", base, sha,
               "--", ".", *excludes)  # fmt: skip
    if not_inlined:
        listing = "\n".join(
            f"#   {f['path']} ({f['bytes']} bytes, {f['reason']})" for f in not_inlined
        )
        text = f"# new files in the snapshot, not inlined here:\n{listing}\n" + text
    return text + "\n" if text and not text.endswith("\n") else text


def create_bundle(root: Path, sha: str, target: Path) -> None:
    """A git bundle of the snapshot ref, so that machines without the project's
    repository can materialize it (written to a temp name, then renamed)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    git(root, "bundle", "create", "-q", str(partial), SNAPSHOT_REF_PREFIX + sha)
    os.replace(partial, target)


def fetch_bundle(root: Path, bundle: Path, sha: str) -> None:
    """Bring a snapshot into `root`'s repository from its bundle."""
    if not bundle.is_file():
        raise GitError(f"snapshot {sha[:12]} is not here and its bundle {bundle} is missing")
    ref = SNAPSHOT_REF_PREFIX + sha
    try:
        git(root, "bundle", "verify", "-q", str(bundle))
        git(root, "fetch", "-q", str(bundle), f"{ref}:{ref}")
    except GitError as e:
        raise GitError(f"bundle {bundle} of snapshot {sha[:12]} is unusable: {e}") from e
    if not snapshot_exists(root, sha):
        raise GitError(f"bundle {bundle} does not contain snapshot {sha[:12]}")


def snapshot_exists(root: Path, sha: str) -> bool:
    return bool(git(root, "rev-parse", "--verify", "-q", f"{sha}^{{commit}}", check=False))
