"""Entry point. Subcommands are imported only when invoked, so `xp --help` stays fast;
every XpError becomes a one-paragraph message and exit code 2 here, in one place.
`xp run`'s common forms are parsed without importing click (cli/running.py)."""

from __future__ import annotations

import errno
import importlib
import signal
import sys
import warnings

from xpkit.errors import XpError

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from typing import Any

    import click

# name -> (module, attribute, one-line help shown by `xp --help` without importing it)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("xpkit.cli.project", "init_cmd", "Set up xpkit in this git repository."),
    "new": ("xpkit.cli.project", "new_cmd", "Write a new experiment file with a fresh ID."),
    "run": ("xpkit.cli.run", "run_cmd", "Run an experiment file or a command, recorded."),
    "submit": ("xpkit.cli.queue", "submit_cmd", "Queue runs for xp worker."),
    "worker": ("xpkit.cli.queue", "worker_cmd", "Execute queued runs on free GPUs."),
    "cluster": ("xpkit.cli.cluster", "cluster_cmd", "Start or stop Ray nodes for the queue."),
    "sweep": ("xpkit.cli.sweep", "sweep_cmd", "Search a [search] with Optuna over the queue."),
    "queue": ("xpkit.cli.queue", "queue_cmd", "Show queued and running runs."),
    "status": ("xpkit.cli.queue", "status_cmd", "Show live workers and their GPUs."),
    "cancel": ("xpkit.cli.queue", "cancel_cmd", "Cancel queued runs, stop running ones."),
    "requeue": ("xpkit.cli.queue", "requeue_cmd", "Put a failed or lost run back in the queue."),
    "ls": ("xpkit.cli.browse", "ls_cmd", "List runs, newest first."),
    "show": ("xpkit.cli.browse", "show_cmd", "Show everything about one run."),
    "logs": ("xpkit.cli.browse", "logs_cmd", "Print or follow a run's output.log."),
    "diff": ("xpkit.cli.compare", "diff_cmd", "Show what differs between two runs."),
    "rerun": ("xpkit.cli.compare", "rerun_cmd", "Run a run again from its snapshot; --check it."),
    "schema": ("xpkit.cli.config", "schema_cmd", "Print the JSON Schema of a class's config."),
    "rm": ("xpkit.cli.trash", "rm_cmd", "Move runs to the trash."),
    "trash": ("xpkit.cli.trash", "trash_cmd", "List, restore or empty trashed runs."),
    "backup": ("xpkit.cli.backup", "backup_cmd", "Incremental, verifiable backups of the runs."),
    "gc": ("xpkit.cli.gc", "gc_cmd", "Remove what can be recreated; never run data."),
    "env": ("xpkit.cli.env", "env_cmd", "Build, list and clean the runs' Python environments."),
    "sync": ("xpkit.cli.sync", "sync_cmd", "Mirror the project's files to servers (rsync)."),
    "hooks": ("xpkit.cli.hooks", "hooks_cmd", "Check, test and flush notification hooks."),
    "report": ("xpkit.cli.report", "report_cmd", "Write Markdown reports with tables and curves."),
    "ui": ("xpkit.cli.ui", "ui_cmd", "Serve a read-only dashboard of runs in the browser."),
    "top": ("xpkit.cli.top", "top_cmd", "The lab's GPUs, queue and runs, live in a terminal."),
}


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: Any = None, line: str | None = None,
) -> None:  # fmt: skip
    print(f"xp: warning: {message}", file=sys.stderr, flush=True)


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def main(argv: list[str] | None = None) -> None:
    warnings.showwarning = _show_warning
    # Over a file-size limit (ulimit -f), a write fails with EFBIG and is reported,
    # instead of the process dying; runs inherit this and do the same.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if args[:1] == ["run"] and (parsed := _parse_run(args[1:])) is not None:
            from xpkit.cli.running import run

            run(**parsed)
        else:
            _click_main(args)
    except XpError as e:
        _error(f"xp: error: {e}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _error("xp: interrupted")
        sys.exit(130)
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise
        # A full disk or quota anywhere, or a file-size limit: said plainly. Every
        # metadata write is atomic, so what was there before is intact.
        _error(
            f"xp: error: cannot write {e.filename or 'a file'}: {e.strerror}; free space (or "
            "raise the limit) and try again: nothing written before was damaged"
        )
        sys.exit(1)
    sys.exit(0)


def _parse_run(args: list[str]) -> dict[str, Any] | None:
    from xpkit.cli.running import parse_run_argv

    return parse_run_argv(args)


def _error(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _click_main(args: list[str]) -> None:
    """Every command but `xp run`'s common forms: parsed by click. Its exceptions are
    turned into messages and exit codes here; XpError and the rest in main()."""
    import click

    try:
        group().main(args=args, prog_name="xp", standalone_mode=False)
    except click.exceptions.Abort:
        _error("xp: aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


def group() -> click.Group:
    """The click group of every command (`cli`), each imported only when invoked."""
    import click

    class LazyGroup(click.Group):
        def list_commands(self, ctx: click.Context) -> list[str]:
            return list(COMMANDS)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            if cmd_name not in COMMANDS:
                return None
            module, attr, _ = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            with formatter.section("Commands"):
                formatter.write_dl([(name, short) for name, (_, _, short) in COMMANDS.items()])

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="xpkit", prog_name="xp")
    def cli() -> None:
        """xpkit: every run tied to its exact code, isolated, recorded, reportable.

        Start with `xp init`, then `xp new experiments/<topic>/01_<name>` and
        `xp run experiments/<topic>/01_<name>.xp.toml`.
        """

    return cli


def __getattr__(name: str) -> Any:
    if name == "cli":  # built on first use: importing this module imports no click
        return group()
    raise AttributeError(name)


if __name__ == "__main__":  # pragma: no cover
    main()
