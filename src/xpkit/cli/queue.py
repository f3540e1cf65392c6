"""`xp submit`, `xp worker`, `xp queue`, `xp status`, `xp cancel`, `xp requeue`."""

from __future__ import annotations

import os
import socket
import sys
import time

import click

from xpkit.errors import QueueError


@click.command("submit", context_settings={"ignore_unknown_options": True})
@click.option("--priority", default=0, show_default=True, help="Higher runs first.")
@click.option("--gpus", type=int, help="GPUs per run (overrides the experiment's; 0 = CPU).")
@click.option("--label", "labels", multiple=True, help="Only workers with this label take it.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Set a parameter.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="Set a config value.")
@click.option("--name", help="Human-readable part of the run names.")
@click.option("--tag", "tags", multiple=True, help="Tag the runs.")
@click.option("--no-git", is_flag=True, help="No snapshot: runs use the files as they are then.")
@click.option(
    "--resumable/--not-resumable",
    default=None,
    help="Preempted runs resume as their next attempt (default: the experiment's).",
)
@click.option("--yes", is_flag=True, help="Queue more runs than XP_MAX_RUNS (1000).")
@click.argument("target", nargs=-1, type=click.UNPROCESSED, required=True)
def submit_cmd(
    priority: int,
    gpus: int | None,
    labels: tuple[str, ...],
    params: tuple[str, ...],
    sets: tuple[str, ...],
    name: str | None,
    tags: tuple[str, ...],
    no_git: bool,
    resumable: bool | None,
    yes: bool,
    target: tuple[str, ...],
) -> None:
    """Queue EXPERIMENT_FILE's runs (or `-- COMMAND ...`) for `xp worker`s: snapshot
    taken, run directories written as queued, nothing executed. Prints the run names.

    Example: xp submit experiments/cifar/01_baseline.xp.toml --priority 5 --gpus 1
    """
    from xpkit.cli.options import parse_params, parse_sets, submit_runs

    submit_runs(
        target,
        priority=priority,
        gpus=gpus,
        labels=labels,
        params=parse_params(params),
        sets=parse_sets(sets),
        name=name,
        tags=tags,
        no_git=no_git,
        resumable=resumable,
        yes=yes,
    )


@click.command("worker")
@click.option("--gpus", "gpu_list", metavar="0,1,3", help="Use only these GPUs (default: all).")
@click.option("--max-jobs", type=int, help="Runs at once (default: number of GPUs, at least 1).")
@click.option("--label", "labels", multiple=True, help="Take runs submitted with this label.")
@click.option("--once", is_flag=True, help="Exit when nothing queued can run here any more.")
@click.option("--backfill", is_flag=True, help="Let smaller runs start while a bigger one waits.")
@click.option("--requeue-lost", is_flag=True, help="Requeue runs that went lost, once.")
@click.option(
    "--preempt",
    is_flag=True,
    help="A queued run of higher priority stops resumable runs of lower priority.",
)
@click.option("--ray", "ray_address", metavar="HEAD:PORT", help="Dispatch onto this Ray cluster.")
@click.option("--node-ip", help="With --ray: this machine's address in the cluster.")
def worker_cmd(
    gpu_list: str | None,
    max_jobs: int | None,
    labels: tuple[str, ...],
    once: bool,
    backfill: bool,
    requeue_lost: bool,
    preempt: bool,
    ray_address: str | None,
    node_ip: str | None,
) -> None:
    """Take queued runs and execute them, one per free GPU, with CUDA_VISIBLE_DEVICES
    set (or, with --ray, on a Ray cluster). SIGTERM or Ctrl-C: finish running runs,
    take no more; twice: stop them and put them back in the queue.

    Example: xp worker --gpus 0,1 --label a100
    """
    from xpkit.queue.scheduler import Backend, Scheduler
    from xpkit.settings import load_settings

    try:
        only = [int(x) for x in gpu_list.split(",")] if gpu_list else None
    except ValueError:
        raise QueueError(f"--gpus {gpu_list!r}: give GPU indices like 0,1,3") from None
    if max_jobs is not None and max_jobs < 1:
        raise QueueError(f"--max-jobs must be 1 or more, got {max_jobs}")
    settings = load_settings()
    if ray_address:
        from xpkit.queue.backends.ray import RayBackend

        if gpu_list or max_jobs:
            raise QueueError(
                "--gpus and --max-jobs are for a local worker; with --ray, Ray "
                "places runs on the GPUs its nodes offer (`xp cluster join`)"
            )
        click.echo(f"xp worker --ray {ray_address}: queue {settings.runs}")
        backend: Backend = RayBackend(settings, ray_address, node_ip=node_ip)
        name = "xp worker --ray"
    else:
        from xpkit.queue.backends.local import LocalBackend

        local = LocalBackend(settings, gpus=only, max_jobs=max_jobs)
        gpus = f"{local.gpu_total} GPU(s)" if local.gpu_total else "no GPU (CPU runs only)"
        backend, name = local, "xp worker"
        click.echo(
            f"xp worker {socket.gethostname()}:{os.getpid()}: {gpus}, "
            f"up to {local.max_jobs} run(s) at once, "
            f"labels: {', '.join(labels) or 'none'}; queue {settings.runs}"
        )
    Scheduler(
        settings,
        backend,
        labels=labels,
        once=once,
        backfill=backfill,
        requeue_lost=requeue_lost,
        preempt=preempt,
        name=name,
    ).run()
    if ray_address:  # every file is written; Ray's exit handlers can wait on dead nodes
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@click.command("queue")
@click.option(
    "--limit", default=200, show_default=True, help="Show at most this many queued runs (0: all)."
)
def queue_cmd(limit: int) -> None:
    """Show queued runs (position, priority, GPUs, age, why waiting) and running runs.

    Example: xp queue --limit 0
    """
    from xpkit.cli.fmt import age, duration
    from xpkit.queue.status import queue_view
    from xpkit.settings import load_settings

    view = queue_view(load_settings().runs)
    for problem in view.problems:
        click.echo(f"xp: warning: {problem}", err=True)
    lines = [f"running ({len(view.running)}):"]
    for row in view.running:
        lines.append(
            f"  {row.name}  {row.status}  {row.host or '-'}  "
            f"{duration(time.time() - row.started) if row.started else '-'}"
        )
    lines.append(f"queued ({len(view.queued)}):")
    shown = view.queued[:limit] if limit > 0 else view.queued
    for position, (item, why) in enumerate(shown, start=1):
        labels = f" label={','.join(item.labels)}" if item.labels else ""
        lines.append(
            f"  {position:>3}. {item.name}  priority {item.priority}  "
            f"gpus {item.gpus}{labels}  {age(item.submitted)}  ({why})"
        )
    click.echo("\n".join(lines))
    if len(shown) < len(view.queued):
        click.echo(
            f"... {len(view.queued) - len(shown)} more queued; --limit 0 shows all", err=True
        )


@click.command("status")
def status_cmd() -> None:
    """Show, per host, the live workers, their GPUs and what runs on them.

    Example: xp status
    """
    from xpkit.queue.status import live_workers
    from xpkit.settings import load_settings

    workers = live_workers(load_settings().runs)
    if not workers:
        click.echo("no live workers (start one with `xp worker`)")
    for w in workers:
        if w.nodes:
            click.echo(f"Ray dispatcher on {w.host} pid {w.pid}: {len(w.nodes)} node(s)")
            for node in w.nodes:
                used = sum(len(g) for g in node["running"].values())
                click.echo(f"  node {node['ip']}: {node['gpus']} GPU(s), {used} used")
                for name, gpus in node["running"].items():
                    click.echo(f"    GPU {','.join(map(str, gpus)) or '-'}: {name}")
            continue
        state = " (stopping)" if w.draining else ""
        click.echo(
            f"{w.host} pid {w.pid}{state}: {w.gpus} GPU(s), {len(w.running)}/{w.max_jobs} "
            f"running, labels: {', '.join(w.labels) or 'none'}"
        )
        for name, gpus in w.running.items():
            where = f"GPU {','.join(map(str, gpus))}" if gpus else "CPU"
            click.echo(f"  {where}: {name}")


@click.command("cancel")
@click.argument("refs", nargs=-1)
@click.option("--all-queued", is_flag=True, help="Cancel every queued run.")
@click.option(
    "--requeue",
    is_flag=True,
    help="Stop resumable running runs and put them back as their next attempt.",
)
def cancel_cmd(refs: tuple[str, ...], all_queued: bool, requeue: bool) -> None:
    """Cancel queued runs and stop running ones (by run, prefix, EXPID/TRIAL or EXPID).

    Example: xp cancel k3j9x2/4; xp cancel k3j9x2; xp cancel --all-queued;
    xp cancel --requeue k3j9x2/4
    """
    from xpkit.queue.recover import cancel
    from xpkit.settings import load_settings
    from xpkit.store.query import active_runs

    if not refs and not all_queued:
        raise QueueError("nothing to cancel: give runs, an experiment ID, or --all-queued")
    runs_root = load_settings().runs
    targets = active_runs(runs_root, refs, all_queued=all_queued)
    if not targets:
        click.echo(
            "nothing queued or running to cancel" + (f" in {', '.join(refs)}" if refs else "")
        )
        return
    failed = 0
    for run_dir in targets:
        try:
            click.echo(f"{cancel(runs_root, run_dir, requeue=requeue)}: {run_dir.name}")
        except QueueError as e:
            click.echo(f"xp: error: {e}", err=True)
            failed += 1
    if failed:
        sys.exit(2)


@click.command("requeue")
@click.argument("run")
def requeue_cmd(run: str) -> None:
    """Put a failed, killed, cancelled or lost RUN back in the queue, once: a resumable
    run as its next attempt, any other as a new trial (whose name is printed).

    Example: xp requeue k3j9x2/7
    """
    from xpkit.queue.submit import requeue_ref
    from xpkit.settings import load_settings

    click.echo(requeue_ref(load_settings(), run))
