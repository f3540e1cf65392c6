"""Code provenance: HEAD, branch, remote, and an immutable snapshot of the working tree.

The snapshot is a commit of tracked + staged + untracked-not-ignored files made through
a temporary index, so the user's branch, index, stash and files stay byte-identical.
It is kept alive under `refs/xp/snapshots/<sha>`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from xpkit.capture import snapshot_cache, staging, watcher
from xpkit.errors import GitError
from xpkit.settings import XP_TOOL_TIMEOUT
from xpkit.subprocs import run_tool

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

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
# git's untracked cache, kept in the snapshot's own index (capture/snapshot_cache.py).
_UNTRACKED_CACHE = staging.UNTRACKED_CACHE
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
            what=f"git {next((a for a in args if not a.startswith('-') and '=' not in a), '')}",
        )
    except FileNotFoundError as e:
        raise GitError("git is not installed or not on PATH; xpkit needs git >= 2.25") from e
    if check and proc.returncode != 0:
        raise GitError(f"`git {' '.join(args)}` failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


# The facts a snapshot starts from, as the last repo_root() found them with one git
# process: (when, git common dir, index path, HEAD, HEAD's tree, branch). Taken by the
# next take_snapshot() of that root within FACTS_FRESH_S: `xp run` asks for the root and
# then snapshots it at once, and every git process is ~3 ms of its start.
_facts: dict[Path, tuple[float, list[str]]] = {}
FACTS_FRESH_S = 0.5
_FACT_ARGS = ("--git-common-dir", "--git-path", "index", "HEAD", "HEAD^{tree}",
              "--abbrev-ref", "HEAD")  # fmt: skip


def repo_root(path: Path) -> Path:
    """The top level of the git repository containing `path`, or a clear error."""
    try:
        out = run_tool(["git", "rev-parse", "--show-toplevel", *_FACT_ARGS], cwd=path,
                       timeout=60, error=GitError, what="git rev-parse")  # fmt: skip
        if out.returncode != 0:  # not a repository, or no commit yet: ask for the root alone
            out = run_tool(["git", "rev-parse", "--show-toplevel"], cwd=path, timeout=60,
                           error=GitError, what="git rev-parse")  # fmt: skip
    except FileNotFoundError as e:
        raise GitError("git is not installed or not on PATH; xpkit needs git") from e
    if out.returncode != 0:
        raise GitError(
            f"{path} is not inside a git repository. xpkit ties every run to the exact code it "
            "ran, so it needs one: run `git init && git add -A && git commit -m init`, or pass "
            "--no-git to run without code provenance."
        )
    lines = out.stdout.splitlines()
    root = Path(lines[0].strip())
    if len(lines) == 6:
        common, index, *rest = lines[1:]
        facts = [str(path / common), str(path / index), *rest]  # relative to `path`
        _facts[root] = (time.monotonic(), facts)
    return root


def _fresh_facts(root: Path) -> list[str] | None:
    found = _facts.pop(root, None)
    if found is None or time.monotonic() - found[0] > FACTS_FRESH_S:
        return None
    return found[1]


class Snapshot:
    """What `git.json` records, plus the diff text for `git.diff`. A plain class, not a
    dataclass: `import dataclasses` (~8 ms) is kept off every run's start-up."""

    __slots__ = ("branch", "commit", "diff", "dirty", "kept_out", "not_inlined", "remote",
                 "snapshot", "tracked_secrets")  # fmt: skip

    def __init__(
        self, commit: str | None, branch: str | None, remote: str | None, dirty: bool,
        snapshot: str, not_inlined: list[dict[str, Any]] | None = None,
        kept_out: list[str] | None = None, tracked_secrets: list[str] | None = None,
        diff: str = "",
    ) -> None:  # fmt: skip
        self.commit, self.branch, self.remote, self.dirty = commit, branch, remote, dirty
        self.snapshot = snapshot
        self.not_inlined = not_inlined if not_inlined is not None else []
        self.kept_out = kept_out if kept_out is not None else []  # secret-looking files left out
        self.tracked_secrets = tracked_secrets if tracked_secrets is not None else []  # of those
        self.diff = diff

    def to_json(self) -> dict[str, Any]:
        """git.json: every field but the diff (which is git.diff)."""
        fields = ("commit", "branch", "remote", "dirty", "snapshot", "not_inlined",
                  "kept_out", "tracked_secrets")  # fmt: skip
        return {name: copy_json(getattr(self, name)) for name in fields}


def copy_json(value: Any) -> Any:
    """A deep copy of lists and dicts, as dataclasses.asdict made."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def secret_pathspecs(globs: tuple[str, ...]) -> list[str]:
    """git pathspecs for gitignore-style globs: a glob without '/' matches at any depth."""
    return [f":(glob){g.lstrip('/')}" if "/" in g else f":(glob)**/{g}" for g in globs]


def take_snapshot(
    root: Path, exclude: tuple[Path, ...] = (), secret_globs: tuple[str, ...] = SECRET_GLOBS
) -> Snapshot:
    """Commit the working tree as it is now, without touching the user's index or HEAD.
    Files matching `secret_globs` are left out (tracked ones too: the snapshot drops
    them) and listed in `kept_out`."""
    background: list[subprocess.Popen[str]] = []  # gits started beside others
    try:
        return _take_snapshot(root, exclude, secret_globs, background)
    finally:
        for proc in background:  # only one left behind by an error is still running
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _take_snapshot(
    root: Path,
    exclude: tuple[Path, ...],
    secret_globs: tuple[str, ...],
    background: list[subprocess.Popen[str]],
) -> Snapshot:
    config = _start_git(root, "config", "--get-regexp", r"^(remote\..*\.url|core\.excludesfile)$")
    background.append(config)
    # One rev-parse for the git folder, index path, HEAD, its tree and branch (or what
    # repo_root just found); it fails without commits.
    facts = _fresh_facts(root) or git(root, "rev-parse", *_FACT_ARGS, check=False).splitlines()
    head: str | None = None
    head_tree: str | None = None
    common_dir: str | None = None
    if len(facts) == 5:
        common_dir, index_text, head, head_tree, branch_name = facts
        common_dir = os.path.join(root, common_dir)  # relative to root, or absolute
        branch = None if branch_name == "HEAD" else branch_name  # "HEAD": detached
    else:  # no commits yet
        index_text = git(root, "rev-parse", "--git-path", "index")
        branch = git(root, "symbolic-ref", "-q", "--short", "HEAD", check=False) or None
    index = Path(index_text)
    index = index if index.is_absolute() else root / index
    inside = _inside(root, exclude)  # the runs root and work folder, when in the project
    answered = _finish_git(config, "config", check=False) or ""
    settings = dict(line.split(" ", 1) for line in answered.splitlines() if " " in line)
    remote = settings.get("remote.origin.url") or next(
        (v for k, v in settings.items() if k.startswith("remote.")), None
    )
    rules = snapshot_cache.exclude_files(secret_globs, settings.get("core.excludesfile"), inside)
    kept_index = snapshot_cache.kept_index_path(common_dir, index, rules[2]) if common_dir else None
    if kept_index is not None:
        try:
            kept_index.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            kept_index = None  # an unwritable cache: start from the user's index each time
    folder = kept_index.parent if kept_index else snapshot_cache.temp_folder()
    tmp_index = str(folder / f".xp-index-{os.getpid()}-{os.urandom(6).hex()}")
    os.close(os.open(tmp_index, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        tree, in_index, untracked, tracked, inner_kept = _stage(
            root, index, kept_index, tmp_index, rules, secret_globs, inside, background
        )
    finally:
        if os.path.exists(tmp_index):
            os.unlink(tmp_index)
    kept_out = sorted(set(untracked) | set(in_index)) + inner_kept
    memo = snapshot_cache.memo_path(common_dir, head, tree, tracked) if common_dir else None
    known = snapshot_cache.read_memo(memo, common_dir) if memo and common_dir else None
    if known is not None:  # this tree on this HEAD was snapshotted before: the same commit
        sha, dirty = known["sha"], known["dirty"]
    else:
        dirty = tree != head_tree
        if dirty and tracked and head_tree:  # dropping tracked secrets alone is not a change
            excludes = [f":(exclude,literal){p}" for p in tracked]
            dirty = bool(git(root, "diff", "--name-only", head_tree, tree, "--", ".", *excludes))
        if tree != head_tree or head is None:
            where = head[:12] if head else "root"
            message = f"xp snapshot of {branch or 'detached HEAD'} at {where}"
            parents = ["-p", head] if head else []
            sha = git(root, "commit-tree", tree, *parents, "-m", message, env=_IDENTITY)
        else:
            sha = head  # a clean tree is exactly HEAD
        ref = SNAPSHOT_REF_PREFIX + sha
        if common_dir is None or not os.path.isfile(os.path.join(common_dir, ref)):
            git(root, "update-ref", ref, sha)  # else: a loose ref of this snapshot exists
    snap = Snapshot(commit=head, branch=branch, remote=remote, dirty=dirty, snapshot=sha,
                    kept_out=kept_out, tracked_secrets=tracked)  # fmt: skip
    if known is not None:
        snap.not_inlined, snap.diff = known["not_inlined"], known["diff"]
    elif dirty:
        snap.not_inlined = _large_or_binary_new_files(root, head or EMPTY_TREE, sha)
        snap.diff = _diff(root, head or EMPTY_TREE, sha, snap.not_inlined, tracked)
    if known is None and memo is not None:
        known = {"sha": sha, "dirty": dirty, "not_inlined": snap.not_inlined, "diff": snap.diff}
        snapshot_cache.write_memo(memo, known)
    return snap


def _copy_index(sources: tuple[Path | None, ...], tmp_index: str) -> list[int] | None:
    """The first of `sources` that exists, copied to `tmp_index` with its mtime (git
    trusts a cached stat only for files changed before the index was written, so a copy
    newer than its content would hide a same-size edit made in the same second); the
    inode, size and mtime of the file copied from `sources[0]`, read from the open file
    (the kept index is replaced by renames, never written in place)."""
    for at, source in enumerate(sources):  # the kept one may go under us (keep_index)
        if source is None:
            continue
        try:
            with open(source, "rb") as src, open(tmp_index, "wb") as dst:
                st = os.fstat(src.fileno())
                shutil.copyfileobj(src, dst, 1 << 20)
        except FileNotFoundError:
            continue
        os.utime(tmp_index, ns=(st.st_atime_ns, st.st_mtime_ns))
        return snapshot_cache.file_id(st) if at == 0 else None
    if os.path.exists(tmp_index):
        os.unlink(tmp_index)  # no index yet: git starts an empty one
    return None


def _stage(
    root: Path, index: Path, kept_index: Path | None, tmp_index: str,
    rules: tuple[Path, Path, Path], secret_globs: tuple[str, ...], inside: list[str],
    background: list[subprocess.Popen[str]],
) -> tuple[str, list[str], list[str], list[str], list[str]]:  # fmt: skip
    """Stage the working tree in `tmp_index` and write its tree without secret-looking
    files: (tree, secret-looking paths the index holds, untracked secret-looking files,
    those the user tracks, what submodules kept out). The index, secrets included,
    becomes the kept index of the next snapshot (git's stat and untracked caches)."""
    secrets_only, status_ignore, add_ignore = rules
    env = {"GIT_INDEX_FILE": tmp_index, **_IDENTITY}
    copied = _copy_index((kept_index, index), tmp_index)
    record = (
        snapshot_cache.read_record(kept_index, copied, add_ignore)
        if kept_index is not None and copied is not None and staging.names_only(secret_globs)
        and not (root / ".gitmodules").is_file()
        else None
    )  # fmt: skip
    # A large project's watcher says what changed since the kept index (asked before git
    # looks, so a change made meanwhile is in the next answer): capture/watcher.py.
    watch = watcher.changes_since(root, record["watch"] if record else None, inside) \
        if kept_index is not None and watcher.large(index) else None  # fmt: skip
    changes = None
    if record is not None:
        watched = (watch[1], record["untracked"]) if watch and watch[1] is not None else None
        changes = staging.worktree_changes(root, env, status_ignore, inside, secret_globs,
                                           watched)  # fmt: skip
        if changes is None:  # undecided (a .gitignore changed): from the user's index
            _copy_index((index,), tmp_index)
    if record is not None and changes is not None and not changes.to_add:
        in_index = record["in_index"]  # nothing differs: the tree of the last snapshot
        tree, untracked, tracked = record["tree"], changes.secrets, record["tracked"]
        inner_kept: list[str] = []
    else:
        staged = changes is not None and staging.add_paths(root, env, add_ignore, changes.to_add)
        if not staged:
            # Untracked secret files the user does not ignore (for the warning), beside add.
            untracked_lookup = _start_git(
                root, *_UNTRACKED_CACHE, "ls-files", "-z", "--others", "--exclude-standard",
                "--", *secret_pathspecs(secret_globs), *(f":(exclude,literal){p}" for p in inside),
            )  # fmt: skip
            background.append(untracked_lookup)
            # The secret globs are ignore rules for this add (matched per name, as .gitignore
            # rules are: pathspec globs cost a full match per file, 0.2 s at 100,000 files).
            git(root, *_UNTRACKED_CACHE, "-c", f"core.excludesFile={add_ignore}", "add", "-A",
                env=env)  # fmt: skip
        inner_kept = (
            _snapshot_submodules(root, env, secret_globs)
            if (root / ".gitmodules").is_file()
            else []
        )
        tree, in_index = _tree_without_secrets(root, env, tmp_index, secrets_only, background)
        if staged and changes is not None and record is not None:
            untracked = changes.secrets
            tracked = sorted(set(record["tracked"]) & set(in_index))
        else:
            untracked = sorted(
                p for p in (_finish_git(untracked_lookup, "ls-files") or "").split("\0") if p
            )
            tracked = sorted(set(in_index) - set(untracked))
    if kept_index is not None:
        found = {"tree": tree, "in_index": in_index, "tracked": tracked, "untracked": untracked,
                 "rules": str(add_ignore), "watch": watch[0] if watch else None}  # fmt: skip
        snapshot_cache.keep_index(tmp_index, kept_index, found)
    return tree, in_index, untracked, tracked, inner_kept


def _tree_without_secrets(
    root: Path, env: dict[str, str], tmp_index: str, secrets_only: Path,
    background: list[subprocess.Popen[str]],
) -> tuple[str, list[str]]:  # fmt: skip
    """The tree of the staged index without its secret-looking files (tracked ones, and
    any a .gitignore `!rule` let in), and those files. The tree is written meanwhile, and
    again from a copy without them if there are some (the index keeps them: the user
    tracks them, so they belong in the next snapshot's start)."""
    tree_writer = _start_git(root, "write-tree", env=env)
    background.append(tree_writer)
    in_index = git(root, "ls-files", "-z", "--cached", "-i", f"--exclude-from={secrets_only}",
                   env=env).split("\0")  # fmt: skip
    in_index = sorted(p for p in in_index if p)
    tree = _finish_git(tree_writer, "write-tree") or ""
    if in_index:
        without = f"{tmp_index}.tree"
        shutil.copy2(tmp_index, without)
        try:
            literal = [f":(literal){p}" for p in in_index]
            env = {**env, "GIT_INDEX_FILE": without}
            git(root, "rm", "-q", "--cached", "--ignore-unmatch", "--", *literal, env=env)
            tree = git(root, "write-tree", env=env)
        finally:
            os.unlink(without)
    return tree, in_index


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


def _inside(root: Path, paths: tuple[Path, ...]) -> list[str]:
    """The given paths that are inside the project, relative to it."""
    rels = []
    for path in paths:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        if str(rel) != ".":
            rels.append(rel.as_posix())
    return rels


def _start_git(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start git in the background (see _finish_git): independent questions in parallel."""
    try:
        return subprocess.Popen(
            ["git", *args], cwd=root, env={**os.environ, **env} if env else None,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        )  # fmt: skip
    except FileNotFoundError as e:
        raise GitError("git is not installed or not on PATH; xpkit needs git >= 2.25") from e


def _finish_git(proc: subprocess.Popen[str], what: str, check: bool = True) -> str | None:
    """The stdout of a git started by _start_git (without its last newline); None when it
    failed and `check` is False."""
    timeout = XP_TOOL_TIMEOUT.get()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # not communicate(): a child of a hung git may hold the pipes open
        proc.wait()
        raise GitError(
            f"git {what} did not finish within {timeout:.0f} s and was stopped; raise the "
            "limit with XP_TOOL_TIMEOUT if it is only slow"
        ) from None
    if proc.returncode != 0:
        if check:
            raise GitError(f"`git {what}` failed: {err.strip()}")
        return None
    return out.rstrip("\n")


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
