"""``shoal up``: a controller here with local agents, or agents on an inventory's hosts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import click

from shoal.cli import console


@click.command()
@click.option(
    "--nodes",
    "count",
    type=click.IntRange(0, 512),
    default=None,
    help="Start N local agents named node-0..N-1 (default 3).",
)
@click.option("--node", "names", multiple=True, help="Start a local agent with this name.")
@click.option("--port", type=click.IntRange(0, 65535), default=8642, show_default=True)
@click.option("--db", "db_url", default=None, help="Database URL (default: .shoal/shoal.db).")
@click.option("--login", default="shoal", show_default=True, help="User to create.")
@click.option("--password", default=None, help="Its password (default: random).")
@click.option(
    "--inventory",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Also deploy agents to the hosts of this inventory (shoal deploy) and stop them "
    "on Ctrl-C; the controller then listens on every address. No local agents unless "
    "--nodes or --node is given.",
)
@click.option(
    "--known-hosts",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --inventory: known hosts file for the hosts' keys (default ~/.ssh/known_hosts).",
)
@click.option("--no-host-key-check", is_flag=True, help="With --inventory: skip host key checks.")
def up(
    count: int | None,
    names: tuple[str, ...],
    port: int,
    db_url: str | None,
    login: str,
    password: str | None,
    inventory: str | None,
    known_hosts: str | None,
    no_host_key_check: bool,
) -> None:
    """A controller with SQLite, plus local agents (or agents on an inventory's hosts);
    Ctrl-C stops all."""
    from shoal.client.local_cluster import LocalCluster
    from shoal.client.settings import UP_ENV

    if count is not None and names:
        raise click.UsageError("give --nodes N or --node NAME, not both")
    default_count = 0 if inventory else 3
    nodes: list[str] | int = list(names) if names else (default_count if count is None else count)
    from shoal.private import private_dir, write_private

    testbed = None
    if inventory:
        from shoal.cli_deploy import _inventory, _known_hosts

        testbed = _inventory(inventory)
        known_hosts = _known_hosts(known_hosts, no_host_key_check)
    workdir = private_dir(Path(".shoal").resolve(), tighten=True)
    cluster = LocalCluster(
        nodes,
        workdir=workdir,
        db_url=db_url,
        port=port,
        login=login,
        password=password,
        # Hosts must reach it; and their nodes are farther away than local ones.
        host="0.0.0.0" if testbed else "127.0.0.1",
        **({"heartbeat_timeout": 10.0, "lost_timeout": 60.0} if testbed else {}),
    )
    try:
        with console.status("starting controller and agents..."):
            cluster.start()
    except (RuntimeError, TimeoutError) as exc:
        lines = [line for line in str(exc).splitlines() if line.startswith("Error:")]
        reason = lines[-1].removeprefix("Error: ") if lines else str(exc)
        raise click.ClickException(f"shoal up failed: {reason}") from None
    if testbed is not None:
        _up_testbed(cluster, testbed, known_hosts)
    env_file = write_private(
        Path(UP_ENV).resolve(),
        f"SHOAL_ENDPOINT={cluster.endpoint}\nSHOAL_LOGIN={cluster.login}\n"
        f"SHOAL_PASSWORD={cluster.password}\n",
    )
    console.print(
        f"[bold green]shoal is up[/] at [bold]{cluster.endpoint}[/]  "
        f"(API docs: {cluster.endpoint}/docs)"
    )
    console.print(f"  login: [bold]{cluster.login}[/]  password: [bold]{cluster.password}[/]")
    console.print(f"  nodes: {', '.join(cluster.node_names) or 'none'}")
    console.print(f"  agents join with: --token-file {cluster.token_file}")
    console.print(f"  clients in this folder find it through {UP_ENV}; elsewhere:")
    console.print(
        f"    export SHOAL_ENDPOINT={cluster.endpoint} SHOAL_LOGIN={cluster.login} "
        f"SHOAL_PASSWORD={cluster.password}"
    )
    console.print("Press Ctrl-C to stop.")
    stop = _wait_for_signal()
    try:
        stop()
    finally:
        if testbed is not None:
            from shoal.connectors.ssh import undeploy_async

            with console.status(f"stopping the agents on {len(testbed)} hosts..."):
                asyncio.run(undeploy_async(testbed, known_hosts=known_hosts))
        with console.status("stopping..."):
            cluster.stop()
            with contextlib.suppress(FileNotFoundError):
                env_file.unlink()
        console.print("stopped.")


def _up_testbed(cluster: Any, testbed: Any, known_hosts: str | None) -> None:
    """Deploy agents to the inventory's hosts for `shoal up --inventory`."""
    from shoal.cli_deploy import run_deploy
    from shoal.connectors.ssh import DeployOptions
    from shoal.private import read_private

    options = DeployOptions(
        join_token=read_private(cluster.token_file).strip(),
        controller_port=cluster.port,
        known_hosts=known_hosts,
    )
    results = run_deploy(testbed, options)
    for result in results:
        if not result.ok:
            console.print(f"[red]error:[/] {result.error}")
    cluster.node_names += [r.host.node for r in results if r.ok]


def _wait_for_signal() -> Any:
    """Return a callable that blocks until SIGINT or SIGTERM."""

    def wait() -> None:
        received: list[int] = []
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, lambda signum, _frame: received.append(signum))
        try:
            while not received:
                signal.pause()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    return wait
