"""What `xp run` does once its arguments are parsed, and a parser for its common forms
that needs no click.

`xp run` is the command whose start-up every run pays: importing click (with typing and
inspect, ~25 ms) would be a quarter of it. So `xp run [options] -- COMMAND ...` and `xp
run [options] FILE.toml [options]` are parsed here; anything else (--help, --queue, a
mistake) goes to the click command in cli/run.py, which calls the same `run()` and says
what is wrong. tests/test_cli_run_argv.py checks that both parsers read every form alike.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, suppress
from pathlib import Path

from xpkit.background import in_background
from xpkit.cli.options import parse_params, parse_sets

TYPE_CHECKING = False  # typing is not imported on `xp run`'s path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from xpkit.execute.launch import SweepRequest
    from xpkit.execute.runner import Outcome
    from xpkit.settings import Settings
    from xpkit.store.create import NewRun, Provenance
    from xpkit.store.rundir import RunDir


DRY_RUN_SHOWN = 20  # runs a --dry-run lists; it counts them all
# The options `parse_run_argv` reads: name -> (keyword, takes a value, repeatable)
_OPTIONS = {
    "--name": ("name", True, False),
    "--tag": ("tags", True, True),
    "--param": ("params", True, True),
    "--set": ("sets", True, True),
    "--dry-run": ("dry_run", False, False),
    "--yes": ("yes", False, False),
    "--no-git": ("no_git", False, False),
}


def parse_run_argv(args: list[str]) -> dict[str, Any] | None:
    """`xp run`'s arguments (after "run") as run()'s keywords, or None for a form left
    to click: an option not in _OPTIONS, a missing value, no target, more than one
    argument before `--`, or one that is not a .toml file."""
    parsed: dict[str, Any] = {"name": None, "tags": [], "params": [], "sets": [],
                              "dry_run": False, "yes": False, "no_git": False}  # fmt: skip
    target: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            if target or i + 1 == len(args):
                return None
            parsed["target"] = args[i + 1 :]
            return parsed
        if arg.startswith("-"):
            option, eq, inline = arg.partition("=")
            if option not in _OPTIONS:
                return None
            key, takes_value, repeatable = _OPTIONS[option]
            if not takes_value:
                if eq:
                    return None
                parsed[key] = True
            else:
                if not eq:
                    i += 1
                    if i == len(args):
                        return None
                    inline = args[i]
                if repeatable:
                    parsed[key].append(inline)
                else:
                    parsed[key] = inline
        else:
            target.append(arg)
        i += 1
    if len(target) != 1 or not target[0].endswith(".toml"):
        return None
    parsed["target"] = target
    return parsed


def run(
    target: list[str], *, name: str | None = None, tags: list[str] | tuple[str, ...] = (),
    params: list[str] | tuple[str, ...] = (), sets: list[str] | tuple[str, ...] = (),
    dry_run: bool = False, yes: bool = False, no_git: bool = False,
) -> None:  # fmt: skip
    """Plan and execute the runs of `xp run` (see its help), say how they ended, and
    exit 1 if any failed or was lost, 130 if one was killed or cancelled."""
    from xpkit.settings import load_settings

    settings = load_settings()
    with ExitStack() as stack:
        provenance = None if dry_run else _start_provenance(settings, no_git, stack)
        try:
            from xpkit.execute.launch import SweepRequest, plan

            is_file = len(target) == 1 and target[0].endswith(".toml")
            request = SweepRequest(
                experiment_file=Path(target[0]) if is_file else None,
                argv=None if is_file else list(target),
                params=parse_params(tuple(params)),
                sets=parse_sets(tuple(sets)),
                name=name,
                tags=list(tags),
                no_git=no_git,
                yes=yes,
            )
            planned = plan(settings, request, preview=DRY_RUN_SHOWN if dry_run else None)
        except BaseException:
            if provenance is not None:  # the planning error is the one to show
                with suppress(BaseException):
                    provenance()
            raise
        if provenance is None:
            _show_dry_run(settings, request, planned)
            return
        results = _run_all(settings, planned, provenance())
    counts: dict[str, int] = {}
    for _, outcome in results:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    _say(f"\n{summary}. Runs are in {settings.runs} (`xp ls` lists them).")
    if counts.get("killed") or counts.get("cancelled"):
        sys.exit(130)
    if counts.get("failed") or counts.get("lost"):
        sys.exit(1)


def _say(text: str) -> None:
    """A line on stderr, its ANSI styles kept only on a terminal (as click.echo does)."""
    if not sys.stderr.isatty():
        from xpkit.cli.fmt import unstyled

        text = unstyled(text)
    print(text, file=sys.stderr, flush=True)


def _show_dry_run(settings: Settings, request: SweepRequest, planned: list[NewRun]) -> None:
    from xpkit.execute.launch import count_runs
    from xpkit.redact import redact_command
    from xpkit.settings import XP_MAX_RUNS

    total = count_runs(settings, request)
    print(f"{total:,} run(s) would run in {settings.runs}"
          + (f"; the first {len(planned)}:" if total > len(planned) else ":"))  # fmt: skip
    for new in planned:
        print(f"  {new.expid}_NNN_{new.slug}: {redact_command(new.command)}")
    if total > XP_MAX_RUNS.get():
        print(f"more than XP_MAX_RUNS ({XP_MAX_RUNS.get():,}): running them needs --yes")


def _start_provenance(
    settings: Settings, no_git: bool, stack: ExitStack
) -> Callable[[], Provenance]:
    """The snapshot's git processes run on another core while the caller imports the
    launcher and plans the runs (~15 ms of `xp run`'s start-up). What the snapshot needs
    is imported here first: two threads importing one circle of modules would deadlock."""
    import xpkit.store.create
    import xpkit.store.pins  # noqa: F401

    return in_background(_provenance, settings, no_git, stack)


def _provenance(settings: Settings, no_git: bool, stack: ExitStack) -> Provenance:
    """The runs root made, a snapshot pin held in `stack` (`xp gc --snapshots` keeps the
    snapshot until the runs name it), then the snapshot and the host's capture."""
    from xpkit.store.create import capture_provenance, ensure_runs_root
    from xpkit.store.pins import snapshot_pin

    ensure_runs_root(settings.runs)
    pin = stack.enter_context(snapshot_pin(settings.runs))
    provenance = capture_provenance(settings, no_git)
    if provenance.snapshot is not None:
        pin.set(provenance.snapshot.snapshot)
    return provenance


def _run_all(
    settings: Settings, planned: list[NewRun], provenance: Provenance
) -> list[tuple[RunDir, Outcome]]:
    from xpkit.cli.fmt import duration, styled, styled_status
    from xpkit.execute.launch import run_sweep

    total = len(planned)
    counter = iter(range(1, total + 1))

    def on_start(run_dir: RunDir) -> None:
        header = f"── {run_dir.name} ({next(counter)}/{total}) "
        _say(styled(header.ljust(79, "─"), bold=True))

    def on_end(run_dir: RunDir, outcome: Outcome) -> None:
        info = run_dir.read_run()
        reason = f" ({info['reason']})" if info.get("reason") else ""
        _say(f"{styled_status(info['status'])} {info['name']} in "
             f"{duration(info.get('duration') or 0)}{reason}")  # fmt: skip

    return run_sweep(settings, planned, provenance, on_start=on_start, on_end=on_end)
