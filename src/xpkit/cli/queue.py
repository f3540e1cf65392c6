"""`xp submit`, `xp worker`, `xp queue`, `xp status`, `xp cancel`, `xp requeue`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from xpkit.errors import QueueError


def submit_runs(
    target: tuple[str, ...], *, priority: int, gpus: int | None, labels: tuple[str, ...],
    params: dict[str, object], sets: dict[str, object], name: str | None,
    tags: tuple[str, ...], no_git: bool,
) -> None:  # fmt: skip
    """Shared by `xp submit` and `xp run --queue`."""
    from xpkit.execute.launch import SweepRequest, plan
    from xpkit.queue.local import QueueRequest, submit
    from xpkit.settings import load_settings
    from xpkit.store.create import capture_provenance

    settings = load_settings()
    is_file = len(target) == 1 and target[0].endswith(".toml")
    request = SweepRequest(
        experiment_file=Path(target[0]) if is_file else None,
        argv=None if is_file else list(target), params=params, sets=sets, name=name,
        tags=list(tags), no_git=no_git,
    )  # fmt: skip
    planned = plan(settings, request)
    provenance = capture_provenance(settings, no_git)
    created = submit(settings, planned, provenance, QueueRequest(priority, gpus, labels))
    for run_dir in created:
        click.echo(run_dir.name)
    click.echo(f"{len(created)} run(s) queued in {settings.runs}; `xp queue` shows them", err=True)


@click.command("submit", context_settings={"ignore_unknown_options": True})
@click.option("--priority", default=0, show_default=True, help="Higher runs first.")
@click.option("--gpus", type=int, help="GPUs per run (overrides the experiment's; 0 = CPU).")
@click.option("--label", "labels", multiple=True, help="Only workers with this label take it.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Set a parameter.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="Set a config value.")
@click.option("--name", help="Human-readable part of the run names.")
@click.option("--tag", "tags", multiple=True, help="Tag the runs.")
@click.option("--no-git", is_flag=True, help="No snapshot: runs use the files as they are then.")
@click.argument("target", nargs=-1, type=click.UNPROCESSED, required=True)
def submit_cmd(
    priority: int, gpus: int | None, labels: tuple[str, ...], params: tuple[str, ...],
    sets: tuple[str, ...], name: str | None, tags: tuple[str, ...], no_git: bool,
    target: tuple[str, ...],
) -> None:  # fmt: skip
    """Queue EXPERIMENT_FILE's runs (or `-- COMMAND ...`) for `xp worker`s: snapshot
    taken, run directories written as queued, nothing executed. Prints the run names.

    Example: xp submit experiments/cifar/01_baseline.xp.toml --priority 5 --gpus 1
    """
    from xpkit.cli.run import _parse_params, _parse_sets

    submit_runs(target, priority=priority, gpus=gpus, labels=labels,
                params=_parse_params(params), sets=_parse_sets(sets), name=name, tags=tags,
                no_git=no_git)  # fmt: skip


@click.command("worker")
@click.option("--gpus", "gpu_list", metavar="0,1,3", help="Use only these GPUs (default: all).")
@click.option("--max-jobs", type=int, help="Runs at once (default: number of GPUs, at least 1).")
@click.option("--label", "labels", multiple=True, help="Take runs submitted with this label.")
@click.option("--once", is_flag=True, help="Exit when nothing queued can run here any more.")
@click.option("--backfill", is_flag=True, help="Let smaller runs start while a bigger one waits.")
@click.option("--requeue-lost", is_flag=True, help="Requeue runs that went lost, once.")
@click.option("--ray", "ray_address", metavar="HEAD:PORT", help="Dispatch onto this Ray cluster.")
@click.option("--node-ip", help="With --ray: this machine's address in the cluster.")
def worker_cmd(
    gpu_list: str | None, max_jobs: int | None, labels: tuple[str, ...], once: bool,
    backfill: bool, requeue_lost: bool, ray_address: str | None, node_ip: str | None,
) -> None:  # fmt: skip
    """Take queued runs and execute them, one per free GPU, with CUDA_VISIBLE_DEVICES
    set. SIGTERM or Ctrl-C: finish running runs, take no more; twice: stop and requeue.

    Example: xp worker --gpus 0,1 --label a100
    """
    from xpkit.queue.worker import Worker
    from xpkit.settings import load_settings

    try:
        only = [int(x) for x in gpu_list.split(",")] if gpu_list else None
    except ValueError:
        raise QueueError(f"--gpus {gpu_list!r}: give GPU indices like 0,1,3") from None
    settings = load_settings()
    if ray_address:
        from xpkit.queue.ray_dispatch import RayDispatcher

        click.echo(f"xp worker --ray {ray_address}: queue {settings.runs}")
        RayDispatcher(settings, ray_address, node_ip=node_ip, once=once,
                      requeue_lost=requeue_lost).run()  # fmt: skip
        return
    worker = Worker(settings, gpus=only, max_jobs=max_jobs, labels=labels, once=once,
                    backfill=backfill, requeue_lost=requeue_lost)  # fmt: skip
    gpus = f"{worker.gpu_total} GPU(s)" if worker.gpu_total else "no GPU (CPU runs only)"
    click.echo(f"xp worker {worker.id}: {gpus}, up to {worker.max_jobs} run(s) at once, "
               f"labels: {', '.join(labels) or 'none'}; queue {settings.runs}")  # fmt: skip
    worker.run()


@click.command("queue")
def queue_cmd() -> None:
    """Show queued runs (position, priority, GPUs, age, why waiting) and running runs.

    Example: xp queue
    """
    from xpkit.cli.fmt import age, duration
    from xpkit.queue.status import queue_view
    from xpkit.settings import load_settings

    view = queue_view(load_settings().runs)
    for problem in view.problems:
        click.echo(f"xp: warning: {problem}", err=True)
    click.echo(f"running ({len(view.running)}):")
    for row in view.running:
        click.echo(f"  {row.name}  {row.status}  {row.host or '-'}  "
                   f"{duration(time.time() - row.started) if row.started else '-'}")  # fmt: skip
    click.echo(f"queued ({len(view.queued)}):")
    for position, (item, why) in enumerate(view.queued, start=1):
        labels = f" label={','.join(item.labels)}" if item.labels else ""
        click.echo(f"  {position:>3}. {item.name}  priority {item.priority}  "
                   f"gpus {item.gpus}{labels}  {age(item.submitted)}  ({why})")  # fmt: skip


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
        click.echo(f"{w.host} pid {w.pid}{state}: {w.gpus} GPU(s), {len(w.running)}/{w.max_jobs} "
                   f"running, labels: {', '.join(w.labels) or 'none'}")  # fmt: skip
        for name, gpus in w.running.items():
            where = f"GPU {','.join(map(str, gpus))}" if gpus else "CPU"
            click.echo(f"  {where}: {name}")


@click.command("cancel")
@click.argument("refs", nargs=-1)
@click.option("--all-queued", is_flag=True, help="Cancel every queued run.")
def cancel_cmd(refs: tuple[str, ...], all_queued: bool) -> None:
    """Cancel queued runs and stop running ones (by run, prefix, EXPID/TRIAL or EXPID).

    Example: xp cancel k3j9x2/4; xp cancel k3j9x2; xp cancel --all-queued
    """
    from xpkit import names
    from xpkit.queue.store import cancel, queued_runs
    from xpkit.settings import load_settings
    from xpkit.store.index import load_rows
    from xpkit.store.query import resolve_run
    from xpkit.store.rundir import RunDir

    runs_root = load_settings().runs
    targets: list[RunDir] = []
    if all_queued:
        targets += [RunDir(runs_root / q.name) for q in queued_runs(runs_root)[0]]
    for ref in refs:
        if names.ID_PATTERN.match(ref) and not (runs_root / ref).exists():
            rows, _ = load_rows(runs_root, ref, statuses=("queued", "running"))
            targets += [RunDir(runs_root / r.name) for r in rows]
        else:
            targets.append(resolve_run(runs_root, ref))
    if not targets:
        raise QueueError("nothing to cancel: give runs, an experiment ID, or --all-queued")
    failed = 0
    for run_dir in targets:
        try:
            click.echo(f"{cancel(runs_root, run_dir)}: {run_dir.name}")
        except QueueError as e:
            click.echo(f"xp: error: {e}", err=True)
            failed += 1
    if failed:
        sys.exit(2)


@click.command("requeue")
@click.argument("run")
def requeue_cmd(run: str) -> None:
    """Put a failed, killed, cancelled or lost RUN back in the queue, as a new trial.

    Example: xp requeue k3j9x2/7
    """
    from xpkit.queue.local import requeue
    from xpkit.settings import load_settings
    from xpkit.store.query import resolve_run

    settings = load_settings()
    new = requeue(settings, resolve_run(settings.runs, run))
    click.echo(new.name)
