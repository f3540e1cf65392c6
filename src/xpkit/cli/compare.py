"""`xp diff`, `xp rerun`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def _value(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def _print_changes(title: str, changes: dict[str, Any]) -> None:
    added, removed, changed = changes["added"], changes["removed"], changes["changed"]
    if not (added or removed or changed):
        click.echo(f"{click.style(title, bold=True)}: same")
        return
    click.secho(title, bold=True)
    for key, (old, new) in changed.items():
        old_text = click.style(_value(old), fg="red")
        click.echo(f"  ~ {key}: {old_text} → {click.style(_value(new), fg='green')}")
    for key, new in added.items():
        click.echo(click.style(f"  + {key}: {_value(new)}", fg="green"))
    for key, old in removed.items():
        click.echo(click.style(f"  - {key}: {_value(old)}", fg="red"))


def _print_code(code: dict[str, Any], stat: bool) -> None:
    title = click.style("code", bold=True)
    if code["same"]:
        click.echo(f"{title}: same snapshot {str(code['a'])[:12]}")
        return
    if not code["available"]:
        click.echo(f"{title}: {str(code['a'])[:12]} → {str(code['b'])[:12]} ({code['note']})")
        return
    click.echo(f"{title}: snapshot {code['a'][:12]} → {code['b'][:12]}")
    for label, key in (("only in a", "commits_b_to_a"), ("only in b", "commits_a_to_b")):
        for line in code[key]:
            click.echo(f"  {label}: {line}")
    if stat or "patch" not in code:
        for f in code["files"]:
            counts = f"+{f['added']} -{f['deleted']}" if f["added"] != "-" else "binary"
            click.echo(f"  {f['path']}  {counts}")
    else:
        for line in code["patch"].splitlines():
            color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
            click.echo(click.style(f"  {line}", fg=color))


def _print_env(env: dict[str, Any]) -> None:
    packages = env["packages"]
    facts = {k: v for k, v in env.items() if k != "packages"}
    if not facts and not any(packages.values()):
        click.echo(f"{click.style('environment', bold=True)}: same")
        return
    click.secho("environment", bold=True)
    for key, (old, new) in facts.items():
        click.echo(f"  ~ {key}: {_value(old)} → {_value(new)}")
    for name, (old, new) in packages["changed"].items():
        click.echo(f"  ~ {name}: {old} → {new}")
    for name, version in packages["added"].items():
        click.echo(click.style(f"  + {name}=={version}", fg="green"))
    for name, version in packages["removed"].items():
        click.echo(click.style(f"  - {name}=={version}", fg="red"))


def _print_summary(summary: dict[str, Any]) -> None:
    if not summary:
        click.echo(f"{click.style('summary', bold=True)}: none")
        return
    click.secho("summary", bold=True)
    width = max(len(k) for k in summary)
    for key, row in summary.items():
        delta = row["delta"]
        delta_text = "" if delta is None else f"  ({delta:+.6g})"
        color = None if not delta else "green" if delta > 0 else "red"
        click.echo(f"  {key:<{width}}  {_fmt(row['a'])} → {_fmt(row['b'])}"
                   + click.style(delta_text, fg=color))  # fmt: skip


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else _value(value)


@click.command("diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option(
    "--code", "patch", is_flag=True, help="Show the full code diff, not only --code-stat."
)
@click.option(
    "--code-stat", "stat", is_flag=True, help="Code as a file list with line counts (default)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
def diff_cmd(run_a: str, run_b: str, patch: bool, stat: bool, as_json: bool) -> None:
    """Show what differs between RUN_A and RUN_B: config (by JSON path), params, code,
    environment and summary metrics. Colored in a terminal, plain when piped.

    Example: xp diff k3j9x2/4 k3j9x2/7
    """
    from xpkit.compare import diff_runs
    from xpkit.settings import load_settings
    from xpkit.store.query import resolve_run

    settings = load_settings()
    a, b = resolve_run(settings.runs, run_a), resolve_run(settings.runs, run_b)
    result = diff_runs(a, b, patch=patch and not stat, repo=settings.root)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"a: {a.name}\nb: {b.name}")
    _print_changes("config", result["config"])
    _print_changes("params", result["params"])
    _print_code(result["code"], stat or not patch)
    _print_env(result["env"])
    _print_summary(result["summary"])


@click.command("rerun")
@click.argument("run")
@click.option("--check", is_flag=True, help="Compare the new run's summary metrics with RUN's.")
@click.option("--rtol", default=1e-6, show_default=True, help="Relative tolerance of --check.")
def rerun_cmd(run: str, check: bool, rtol: float) -> None:
    """Run RUN's snapshot, command, params and config again, as a new trial of its
    experiment. With --check, exit 1 unless every summary metric is reproduced.

    Example: xp rerun k3j9x2/4 --check --rtol 1e-4
    """
    from xpkit.compare import check_reproduced
    from xpkit.errors import RunError
    from xpkit.execute.launch import plan_rerun, run_sweep
    from xpkit.settings import load_settings
    from xpkit.store import rundir as rd
    from xpkit.store.query import resolve_run

    settings = load_settings()
    original = resolve_run(settings.runs, run)
    if check:  # checked before anything runs: nothing to compare is an error, not a pass
        status = rd.status_of(original, original.read_run())
        numbers = [v for v in (original.read_optional(rd.SUMMARY_JSON, {}) or {}).values()
                   if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
        if status != "finished" or not numbers:
            raise RunError(
                f"--check: {original.name} is {status} with {len(numbers)} numeric summary "
                "metric(s); there is nothing to reproduce (rerun it without --check)"
            )
    planned, provenance = plan_rerun(settings, original)
    ((new_dir, outcome),) = run_sweep(settings, [planned], provenance)
    click.echo(f"{outcome.status}: {new_dir.name} (rerun of {original.name})", err=True)
    if not check:
        sys.exit(0 if outcome.status == "finished" else 1)
    before = original.read_optional(rd.SUMMARY_JSON, {}) or {}
    after = new_dir.read_optional(rd.SUMMARY_JSON, {}) or {}
    checks = check_reproduced(before, after, rtol)
    width = max([len(c.name) for c in checks] + [6])
    for c in checks:
        verdict = (
            click.style("reproduced", fg="green")
            if c.reproduced
            else click.style("DIFFERS", fg="red")
        )
        difference = "" if c.difference is None else f"  |diff| {c.difference:.3g}"
        click.echo(f"{c.name:<{width}}  {_fmt(c.original)} → {_fmt(c.new)}  {verdict}{difference}")
    failed = [c.name for c in checks if not c.reproduced]
    if failed or outcome.status != "finished":
        click.echo(f"not reproduced: {', '.join(failed) or outcome.status}", err=True)
        sys.exit(1)
    click.echo(f"all {len(checks)} summary metrics reproduced (rtol {rtol:g})", err=True)
