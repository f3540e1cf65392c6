"""`xp ls`, `xp show`, `xp logs`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from xpkit.errors import ConfigError
from xpkit.store.rundir import STATUSES

if TYPE_CHECKING:
    from xpkit.store.index import RunRow

METRIC_COLUMNS = 6
FIXED_COLUMNS = ("name", "status", "age", "duration", "host")
STATUS_CHOICE = click.Choice(list(STATUSES))


def _experiment_filter(value: str | None) -> str | None:
    """--exp takes an experiment ID or an experiment file."""
    if value is None:
        return None
    from xpkit import names
    from xpkit.experiment import SUFFIX, load_experiment

    if value.endswith(SUFFIX) or Path(value).is_file():
        return load_experiment(Path(value)).id
    if not names.ID_PATTERN.match(value):
        raise ConfigError(
            f"--exp {value!r}: give a 6-character experiment ID or an experiment file"
        )
    return value


@click.command("ls")
@click.option("--exp", "exp", metavar="ID|FILE", help="Only runs of this experiment.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=STATUS_CHOICE,
    help="Only runs with this status (repeatable).",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="COND",
    help="Filter on a param or metric: 'lr=0.1', 'acc>0.9' (repeatable, all must hold).",
)
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable).")
@click.option(
    "--sort",
    "sort",
    metavar="KEY",
    help="Best first by a metric (lowest first for losses), or ascending by a param.",
)
@click.option(
    "--columns",
    metavar="A,B,...",
    help="Show these columns: name, status, age, duration, host, params, metrics.",
)
@click.option(
    "--limit", default=50, show_default=True, help="Show at most this many runs (0: all)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document: a list of runs.")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print JSON Lines: one object per run.")
@click.option(
    "--rescan",
    is_flag=True,
    help="Check every run folder for changes (after changing run files by hand, not with xp).",
)
def ls_cmd(
    exp: str | None,
    statuses: tuple[str, ...],
    where: tuple[str, ...],
    tags: tuple[str, ...],
    sort: str | None,
    columns: str | None,
    limit: int,
    as_json: bool,
    as_jsonl: bool,
    rescan: bool,
) -> None:
    """List runs, newest first, with the params that vary and their summary metrics.

    Examples: xp ls --exp k3j9x2 --status failed; xp ls --where 'lr=0.1' --where 'acc>0.9'
    """
    from xpkit.settings import load_settings
    from xpkit.store.index import load_page
    from xpkit.store.query import Names, filter_rows, parse_where, sort_rows

    if as_json and as_jsonl:
        raise ConfigError("--json and --jsonl: give one (a JSON document, or a line per run)")
    settings = load_settings()
    # Without conditions only the runs shown are read from the index (100,000 runs: 50).
    whole = bool(where or tags or sort or columns) or limit <= 0
    rows, total, problems = load_page(settings.runs, _experiment_filter(exp), statuses,
                                      0 if whole else limit, rescan)  # fmt: skip
    for problem in problems:
        click.echo(f"xp: warning: {problem}", err=True)
    known = Names(rows)  # every name typed is checked against the runs listed
    conditions = tuple(parse_where(w, known) for w in where)
    chosen = None
    if columns:
        chosen = [(c, c if c in FIXED_COLUMNS else known.resolve(c, "--columns"))
                  for c in (c.strip() for c in columns.split(",")) if c]  # fmt: skip
    if whole:
        rows = filter_rows(rows, conditions=conditions, tags=tags)
        if sort:
            rows = sort_rows(rows, known.resolve(sort, "--sort"))
        total = len(rows)
    shown = rows[:limit] if limit > 0 else rows
    if as_json:
        click.echo(json.dumps([row.to_json() for row in shown], indent=1))
        return
    if as_jsonl:
        click.echo("\n".join(json.dumps(row.to_json()) for row in shown))
        return
    _print_table(shown, known, chosen)
    if total > len(shown):
        click.echo(f"... {total - len(shown)} more (of {total}); --limit 0 shows all", err=True)


def _print_table(
    rows: list[RunRow], known: Any, columns: list[tuple[str, str]] | None = None
) -> None:
    """`columns`: (title, key) pairs; default: the fixed ones, the params that vary,
    the first metrics (a name both a param and a metric is spelled out in its title)."""
    from xpkit.cli.fmt import age, duration, value
    from xpkit.store.query import METRICS, PARAMS, lookup, metric_names, varying_params

    if not rows:
        click.echo("no runs")
        return
    if columns is None:
        columns = [(c, c) for c in FIXED_COLUMNS]
        columns += [(known.column(p, "param"), PARAMS + p) for p in varying_params(rows)]
        columns += [(known.column(m, "metric"), METRICS + m)
                    for m in metric_names(rows)[:METRIC_COLUMNS]]  # fmt: skip
    header = [title for title, _ in columns]
    fixed = {
        "name": lambda r: r.name, "status": lambda r: r.status, "age": lambda r: age(r.created),
        "duration": lambda r: duration(r.duration), "host": lambda r: r.host or "-",
    }  # fmt: skip
    cells = [
        [fixed[key](row) if key in fixed else value(lookup(row, key)) for _, key in columns]
        for row in rows
    ]
    if sys.stdout.isatty():
        _print_rich_table(header, cells)
        return
    # Piped: plain aligned columns, one run per line, no color (for grep and awk).
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    for line in [header, *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def _print_rich_table(header: list[str], cells: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from xpkit.cli.fmt import status

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in header:
        table.add_column(column, no_wrap=column in FIXED_COLUMNS, overflow="fold")
    for line in cells:
        table.add_row(*(status(c) if h == "status" else c for h, c in zip(header, line)))
    Console().print(table)


MAX_CHECKPOINTS_SHOWN = 10  # `xp show --json` has them all


@click.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print all recorded metadata as JSON.")
def show_cmd(run: str, as_json: bool) -> None:
    """Show everything about RUN (a name, a unique prefix, or EXPID/TRIAL).

    Example: xp show k3j9x2/4
    """
    from xpkit.settings import load_settings
    from xpkit.store import rundir as rd
    from xpkit.store.query import resolve_run

    run_dir = resolve_run(load_settings().runs, run)
    info = run_dir.read_run()
    info["status"] = rd.status_of(run_dir, info)
    record = {
        "run": info,
        "config": run_dir.read_optional(rd.CONFIG_JSON, {}),
        "summary": run_dir.read_optional(rd.SUMMARY_JSON, {}),
        "git": run_dir.read_optional(rd.GIT_JSON, {}),
        "env": run_dir.read_optional(rd.ENV_JSON, {}),
        "checkpoints": run_dir.read_checkpoints(),
        "dir": str(run_dir.path),
    }
    if as_json:
        click.echo(json.dumps(record, indent=2, default=str))
        return
    _print_run(record)


def _print_run(record: dict[str, Any]) -> None:
    from rich.console import Console

    from xpkit.cli.fmt import duration, status, value

    console = Console(highlight=False)
    info, git, env = record["run"], record["git"], record["env"]
    console.print(f"[bold]{info['name']}[/]  {status(info['status'])}")
    experiment = info["experiment"]
    python = env.get("python", {})
    exit_text = value(info.get("exit_code"))
    if info.get("reason"):
        exit_text += f" ({info['reason']})"
    if "snapshot" in git:
        dirty = " (dirty)" if git.get("dirty") else ""
        git_text = (
            f"{git.get('branch')} @ {(git.get('commit') or '-')[:12]}{dirty}, "
            f"snapshot {git['snapshot'][:12]}"
        )
    else:
        git_text = "no code provenance (--no-git)"
    lines = [
        ("experiment", f"{experiment.get('name', '')} ({info['experiment_id']}) "
                       f"{experiment.get('file') or ''}".rstrip()),
        ("command", info["command"]),
        ("dir", record["dir"]),
        ("host", f"{info.get('host')} pid {info.get('pid')}"),
        ("created", _stamp(info.get("created"))),
        ("started", _stamp(info.get("started"))),
        ("ended", _stamp(info.get("ended"))),
        ("duration", duration(info.get("duration"))),
        ("exit", exit_text),
        ("peak RSS", f"{(info.get('peak_rss_bytes') or 0) / 2**20:.1f} MiB"),
        ("tags", ", ".join(info.get("tags") or []) or "-"),
        ("git", git_text),
        ("python", f"{python.get('version', '-')} {python.get('executable', '')}"),
        ("env", _environment_text(info, env)),
        ("gpus", ", ".join(g["name"] for g in env.get("gpus", {}).get("gpus", [])) or "none"),
        ("assigned", ", ".join(f"GPU {i}" for i in info.get("gpus") or []) or "-"),
        ("worker", info.get("worker") or "-"),
    ]  # fmt: skip
    for key, text in lines:
        console.print(f"  [bold]{key:<11}[/]{text}")
    attempts = info.get("attempts") or []
    if info.get("resumable") or len(attempts) > 1:
        console.print(
            f"[bold]attempts[/] ({info.get('attempt') or 1}, resumable)"
            if info.get("resumable")
            else "[bold]attempts[/]"
        )
        for entry in attempts:
            gpus = ",".join(map(str, entry.get("gpus") or [])) or "-"
            reason = f" ({entry['reason']})" if entry.get("reason") else ""
            console.print(
                f"  {entry.get('attempt')}. {_stamp(entry.get('started'))} → "
                f"{_stamp(entry.get('ended'))}  {entry.get('host')} GPU {gpus}  "
                f"{entry.get('status')} exit {value(entry.get('exit_code'))}{reason}"
            )
    for title, table in (("params", info.get("params")), ("summary", record["summary"])):
        if table:
            console.print(f"[bold]{title}[/]")
            for key, val in table.items():
                console.print(f"  {key:<20} {value(val)}")
    checkpoints = record["checkpoints"]
    if checkpoints:
        shown = checkpoints[-MAX_CHECKPOINTS_SHOWN:]
        more = len(checkpoints) - len(shown)
        console.print(
            f"[bold]checkpoints[/] ({len(checkpoints)}"
            + (f", the last {len(shown)})" if more else ")")
        )
        for entry in shown:
            step = "-" if entry.get("step") is None else entry["step"]
            path = Path(record["dir"], entry["path"])  # absolute paths stay as they are
            gone = "" if path.exists() else " (removed)"
            console.print(  # unwrapped: a path is for copying
                f"  step {step:<8} {_stamp(entry.get('time'))}  {entry['path']}{gone}",
                soft_wrap=True,
            )


def _environment_text(info: dict[str, Any], env: dict[str, Any]) -> str:
    """Which Python environment the run asked for and which one it got."""
    used = env.get("environment")
    if used:
        count = len(used.get("packages") or [])
        return f"{used['key']} ({used.get('file')}, {count} package{'s' * (count != 1)})"
    if info.get("env"):
        return f"{info['env'].get('file')} (not built yet)"
    return "the interpreter running xp"


def _stamp(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


@click.command("logs")
@click.argument("run")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the run ends.")
def logs_cmd(run: str, follow: bool) -> None:
    """Print RUN's output.log (stdout and stderr as the terminal saw them).

    Example: xp logs k3j9x2/4 -f
    """
    from xpkit.settings import load_settings
    from xpkit.store import rundir as rd
    from xpkit.store.query import resolve_run

    run_dir = resolve_run(load_settings().runs, run)
    out = sys.stdout.buffer
    with open(run_dir.file(rd.OUTPUT_LOG), "rb") as log:
        while True:
            chunk = log.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow:
                break
            if rd.status_of(run_dir, run_dir.read_run()) not in rd.ACTIVE:
                out.write(log.read())  # what arrived between the last read and the end
                out.flush()
                break
            time.sleep(0.2)
