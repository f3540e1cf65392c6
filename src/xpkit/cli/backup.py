"""`xp backup`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from xpkit.errors import StoreError


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--list", "show", is_flag=True, help="List the snapshots in DEST.")
@click.option(
    "--verify",
    is_flag=True,
    help="Check every file of the latest (or --snapshot) against its checksum.",
)
@click.option("--restore", "restore_", is_flag=True, help="Copy runs back from a snapshot.")
@click.option("--snapshot", help="Which snapshot (default: the latest).")
@click.option("--run", help="With --restore: only this run.")
@click.option(
    "--force",
    is_flag=True,
    help="With --restore: restore files whose checksum differs too (marked in the run).",
)
@click.option("--rsync", "use_rsync", is_flag=True, help="Copy with rsync (implied by host:path).")
def backup_cmd(dest: Path, show: bool, verify: bool, restore_: bool, snapshot: str | None,
               run: str | None, force: bool, use_rsync: bool) -> None:  # fmt: skip
    """Back up the runs root into DEST as an incremental, dated snapshot: unchanged
    files are hard links to the previous one.

    Example: xp backup /mnt/backup/xp; xp backup /mnt/backup/xp --verify
    """
    from xpkit.settings import load_settings
    from xpkit.store import backup

    runs_root = load_settings().runs
    from xpkit.values import is_remote

    remote = is_remote(str(dest))
    if remote or use_rsync:
        if show or verify or restore_:
            raise StoreError("--list, --verify and --restore read the backup: run them where "
                             "it is (or on a mount of it)")  # fmt: skip
        result = backup.backup_rsync(runs_root, str(dest))
        click.echo(f"{result.snapshot}: {result.files} files (rsync, unchanged ones hard-linked)")
        return
    found = backup.snapshots(dest)
    if show:
        for path in found:
            files = len(json.loads((path / backup.MANIFEST).read_text()))
            click.echo(f"{path.name}  {files} files")
        return
    if verify or restore_:
        if not found:
            raise StoreError(f"no backups in {dest}")
        chosen = dest / snapshot if snapshot else found[-1]
        if chosen not in found:
            raise StoreError(f"no snapshot {snapshot!r} in {dest}; `xp backup {dest} --list`")
        if verify:
            bad = backup.verify(chosen)
            for line in bad:
                click.echo(f"BAD {line}")
            click.echo(f"{chosen.name}: {'OK' if not bad else f'{len(bad)} bad file(s)'}")
            sys.exit(1 if bad else 0)
        from xpkit.store.restore import restore

        restored = restore(chosen, runs_root, run, force=force)
        for item in restored:
            if item.name != item.original:
                click.echo(f"{item.original}: restored as {item.name} (its trial is taken here)")
            for line in item.bad_files:
                click.echo(f"{item.name}: restored with a bad file (--force): {line}", err=True)
        click.echo(f"restored {len(restored)} run(s) from {chosen.name}")
        return
    result = backup.backup(runs_root, dest)
    click.echo(f"{result.snapshot}: {result.files} files, {result.linked} hard-linked, "
               f"{result.copied_bytes} bytes copied in {result.seconds:.1f} s")  # fmt: skip
