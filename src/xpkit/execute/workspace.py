"""Materialize snapshots as git worktrees under the project's `workdir`.

A worktree holds one snapshot at a time and is shared by every run of that snapshot;
each run using it holds a file in `<tree>.users/`. When no run needs it any more it
goes idle, and the next snapshot recycles an idle worktree with an incremental
`git checkout` (only changed files are rewritten: creating a 1,000-file checkout from
scratch costs most of a second on slow disks). At most IDLE_KEPT idle worktrees are
kept per project; the rest are removed. One lock file (exclusive create) serializes
these decisions between the processes of this machine; workdir is always local.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from xpkit.capture.git import git, submodule_paths
from xpkit.errors import GitError, RunError
from xpkit.store.locks import exclusive_lock

IDLE_KEPT = 2


class Workspace:
    """The snapshot worktrees of one project."""

    def __init__(
        self,
        project: Path,
        workdir: Path,
        link: tuple[str, ...] = (),
        secrets: tuple[str, ...] = (),
        secrets_from: Path | None = None,
    ) -> None:
        self.project = project
        self.workdir = workdir
        self.link = link
        # Files the snapshot kept out because they look like credentials: linked from
        # the project where they are (`secrets_from`), never copied.
        self.secrets = secrets
        self.secrets_from = secrets_from or project

    def acquire(self, sha: str, user: str) -> Path:
        """A worktree checked out at `sha`, registered as used by `user`."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create workdir {self.workdir}: {e.strerror}") from e
        with exclusive_lock(self.workdir / ".lock"):
            trees = self._trees()
            tree = next((t for t in trees if self._sha(t) == sha), None)
            if tree is None:
                idle = [t for t in trees if not self._users(t)]
                tree = idle[0] if idle else self._new_tree_path(trees)
                self._check_out(tree, sha, recycle=bool(idle))
            users = self._users_dir(tree)
            users.mkdir(exist_ok=True)
            (users / user).touch()
        return tree

    def release(self, tree: Path, user: str) -> None:
        """Drop `user`'s claim; idle worktrees beyond IDLE_KEPT are removed."""
        with exclusive_lock(self.workdir / ".lock"):
            (self._users_dir(tree) / user).unlink(missing_ok=True)
            idle = [t for t in self._trees() if not self._users(t)]
            for extra in idle[IDLE_KEPT:]:
                self.remove(extra)

    def idle_trees(self) -> list[Path]:
        """Worktrees no run uses now (a hint: `remove_if_idle` decides under the lock)."""
        return [t for t in self._trees() if not self._users(t)]

    def remove_if_idle(self, tree: Path) -> bool:
        """Remove `tree` unless a run uses it or is checking it out (`xp gc`)."""
        with exclusive_lock(self.workdir / ".lock"):
            if self._users(tree) or not tree.is_dir():
                return False
            self.remove(tree)
            return True

    def remove(self, tree: Path) -> None:
        git(self.project, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
        shutil.rmtree(self._users_dir(tree), ignore_errors=True)
        tree.with_name(tree.name + ".sha").unlink(missing_ok=True)
        git(self.project, "worktree", "prune", check=False)

    # --- bookkeeping files beside each tree -------------------------------------------
    def _trees(self) -> list[Path]:
        return sorted(p for p in self.workdir.glob("wt-*") if p.is_dir() and "." not in p.name)

    def _new_tree_path(self, trees: list[Path]) -> Path:
        taken = {t.name for t in trees}
        number = 1
        while f"wt-{number}" in taken or (self.workdir / f"wt-{number}").exists():
            number += 1
        return self.workdir / f"wt-{number}"

    def _users_dir(self, tree: Path) -> Path:
        return tree.with_name(tree.name + ".users")

    def _users(self, tree: Path) -> list[str]:
        try:
            return os.listdir(self._users_dir(tree))
        except FileNotFoundError:
            return []

    def _sha(self, tree: Path) -> str | None:
        try:
            return tree.with_name(tree.name + ".sha").read_text().strip() or None
        except OSError:
            return None

    def _check_out(self, tree: Path, sha: str, *, recycle: bool) -> None:
        marker = tree.with_name(tree.name + ".sha")
        marker.unlink(missing_ok=True)  # a crash mid-checkout leaves no false marker
        if recycle:
            try:
                git(tree, "checkout", "-q", "-f", "--detach", sha)
                # Untracked leftovers of earlier runs go; ignored ones (caches,
                # checkpoints) stay, as they would in the user's own checkout.
                git(tree, "clean", "-q", "-ffd", *(f"--exclude=/{n}" for n in self.link))
            except GitError:
                self.remove(tree)
                recycle = False
        if not recycle:
            shutil.rmtree(tree, ignore_errors=True)
            git(self.project, "worktree", "prune", check=False)
            git(self.project, "worktree", "add", "--detach", "--force", str(tree), sha)
        self._check_out_submodules(tree, sha, self.project)
        self._link_folders(tree)
        self._link_secrets(tree)
        marker.write_text(sha + "\n")

    def _check_out_submodules(self, tree: Path, sha: str, project: Path) -> None:
        """Each submodule at the commit the snapshot records, as a worktree of the
        project's own checkout of it (no network, no clone; nested ones too)."""
        if not (tree / ".gitmodules").is_file():
            return
        for path in submodule_paths(tree):
            entry = git(tree, "ls-tree", sha, "--", path).split()
            if len(entry) < 3 or entry[0] != "160000":
                continue
            commit, source, target = entry[2], project / path, tree / path
            if not (source / ".git").exists():
                warnings.warn(
                    f"submodule {path} is not checked out in {project}: the run's copy of it "
                    "is empty",
                    stacklevel=4,
                )
                continue
            if (target / ".git").exists():
                git(target, "checkout", "-q", "-f", "--detach", commit)
                git(target, "clean", "-q", "-ffd")
            else:
                git(source, "worktree", "prune", check=False)
                git(source, "worktree", "add", "--detach", "--force", str(target), commit)
            self._check_out_submodules(target, commit, source)

    def _link_secrets(self, tree: Path) -> None:
        missing = []
        for name in self.secrets:
            source, target = self.secrets_from / name, tree / name
            if not source.is_file():
                missing.append(name)
            elif not target.exists() and not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source.resolve())
        if missing:
            warnings.warn(
                f"{', '.join(missing)}: kept out of the snapshot (they look like secrets) and "
                f"not in {self.secrets_from} on this machine; the run goes without them",
                stacklevel=3,
            )

    def _link_folders(self, tree: Path) -> None:
        for name in self.link:
            source = self.project / name
            target = tree / name
            if target.is_symlink():
                continue
            if not source.exists():
                warnings.warn(
                    f"link folder '{name}' does not exist in {self.project}; not linked",
                    stacklevel=3,
                )
                continue
            if target.exists():
                warnings.warn(
                    f"link folder '{name}' is part of the snapshot; the snapshot's copy is used",
                    stacklevel=3,
                )
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
