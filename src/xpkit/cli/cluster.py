"""`xp cluster head|join|stop`."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("cluster")
def cluster_cmd() -> None:
    """Run the queue on a Ray cluster: start a head, join nodes, stop what xp started.

    Example: xp cluster head --node-ip 10.0.0.5; then on each GPU server the printed
    `xp cluster join` command; then `xp worker --ray 10.0.0.5:6379` on the head.
    """


def _common(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--node-ip", required=True, help="This node's address, seen by the others."),
        click.option("--num-gpus", type=int, help="GPUs to offer (default: the free ones now)."),
        click.option("--num-cpus", type=int, help="CPUs to offer (default: all)."),
        click.option("--temp-dir", type=click.Path(path_type=Path), help="Ray's session folder."),
        click.option("--label", "labels", multiple=True, help="Offer runs with this label."),
    ]):  # fmt: skip
        func = option(func)
    return func


@cluster_cmd.command("head")
@_common
@click.option("--port", default=6379, show_default=True, help="The head's port.")
@click.option("--dashboard", is_flag=True, help="Start Ray's dashboard (on 127.0.0.1 only).")
def head_cmd(node_ip: str, num_gpus: int | None, num_cpus: int | None, temp_dir: Path | None,
             labels: tuple[str, ...], port: int, dashboard: bool) -> None:  # fmt: skip
    """Start a Ray head here (the machine holding the runs root).

    Example: xp cluster head --node-ip 10.0.0.5
    """
    from xpkit.queue.ray_cluster import start_head, token_path

    node = start_head(node_ip=node_ip, port=port, num_gpus=num_gpus, temp_dir=temp_dir,
                      labels=labels, num_cpus=num_cpus, dashboard=dashboard)  # fmt: skip
    click.echo(
        f"Ray head at {node.address} ({len(node.pids)} processes; `xp cluster stop` stops them)"
    )
    click.echo(f"Token saved in {token_path()}. On each GPU server run:")
    click.echo(
        f"  XP_RAY_TOKEN={node.token} xp cluster join {node.address} --node-ip <its address>"
    )
    click.echo(f"Then here: xp worker --ray {node.address} --node-ip {node_ip}")


@cluster_cmd.command("join")
@click.argument("address")
@_common
@click.option("--watch", is_flag=True, help="Stay up and re-offer GPUs as their use changes.")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between --watch looks.")
def join_cmd(
    address: str, node_ip: str, num_gpus: int | None, num_cpus: int | None,
    temp_dir: Path | None, labels: tuple[str, ...], watch: bool, interval: float,
) -> None:  # fmt: skip
    """Join this machine to the Ray cluster at ADDRESS (HEAD:PORT), offering only the
    GPUs that are free now.

    Example: XP_RAY_TOKEN=... xp cluster join 10.0.0.5:6379 --node-ip 10.0.0.7
    """
    from xpkit.queue.ray_cluster import join

    node = join(address, node_ip=node_ip, num_gpus=num_gpus, temp_dir=temp_dir, labels=labels,
                num_cpus=num_cpus)  # fmt: skip
    click.echo(f"joined {address} as {node_ip} ({len(node.pids)} processes)")
    if watch:
        from xpkit.queue.ray_cluster import watch as watch_gpus

        if num_gpus is not None:
            raise click.UsageError("--watch re-offers the free GPUs; it cannot go with --num-gpus")
        try:
            watch_gpus(address, node_ip=node_ip, temp_dir=temp_dir, labels=labels,
                       num_cpus=num_cpus, interval=interval)  # fmt: skip
        except KeyboardInterrupt:
            click.echo("stopped watching; the node stays up (`xp cluster stop` stops it)")


@cluster_cmd.command("stop")
@click.option("--node-ip", help="Only the node started with this address.")
def stop_cmd(node_ip: str | None) -> None:
    """Stop the Ray processes xp started on this machine, by PID (never `ray stop`).

    Example: xp cluster stop
    """
    from xpkit.queue.ray_cluster import stop

    killed = stop(node_ip)
    click.echo(f"stopped {len(killed)} process(es)")
