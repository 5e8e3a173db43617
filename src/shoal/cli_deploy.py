"""``shoal deploy``, ``shoal undeploy`` and ``shoal logs``: agents on the hosts of an inventory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from shoal.cli import _client, client_command, console
from shoal.extras import require_deploy

if TYPE_CHECKING:
    from shoal.connectors.inventory import Host, Inventory
    from shoal.connectors.ssh import HostResult

# The inventory a deploy in this folder used last: `shoal logs NODE` looks there.
LAST_INVENTORY = Path(".shoal") / "inventory"


def _inventory(path: str | None) -> Inventory:
    require_deploy()
    from shoal.connectors.inventory import InventoryError, load_inventory

    if path is None:
        env = os.environ.get("SHOAL_INVENTORY")
        if env:
            path = env
        elif LAST_INVENTORY.exists():
            path = LAST_INVENTORY.read_text(encoding="utf-8").strip()
        else:
            raise click.UsageError(
                "which inventory? give --inventory FILE (or deploy one here first)"
            )
    try:
        return load_inventory(path)
    except InventoryError as exc:
        raise click.ClickException(str(exc)) from None


def _remember(inventory: Inventory) -> None:
    from shoal.private import private_dir

    private_dir(LAST_INVENTORY.parent.resolve())
    LAST_INVENTORY.write_text(str(inventory.path.resolve()) + "\n", encoding="utf-8")


def _known_hosts(known_hosts: str | None, no_check: bool) -> str | None:
    if no_check:
        console.print("[yellow]not checking host keys: anyone on the path can pose as a host[/]")
        return None
    return known_hosts or "~/.ssh/known_hosts"


_ssh_options = [
    click.option(
        "--known-hosts",
        type=click.Path(dir_okay=False),
        envvar="SHOAL_KNOWN_HOSTS",
        default=None,
        help="Known hosts file to check host keys against (default ~/.ssh/known_hosts).",
    ),
    click.option(
        "--no-host-key-check",
        is_flag=True,
        help="Do not check host keys (a testbed on a trusted network only).",
    ),
]


def _ssh(fn: Any) -> Any:
    for option in reversed(_ssh_options):
        fn = option(fn)
    return fn


@contextmanager
def host_progress(hosts: list[Host], total: int) -> Iterator[Callable[[Host, str], None]]:
    """A progress bar per host; yields the callback that moves them."""
    from shoal.connectors.ssh import STAGES

    columns = (
        SpinnerColumn(finished_text=" "),
        TextColumn("{task.fields[node]:<20}"),
        BarColumn(bar_width=20),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        ids = {host.node: bar.add_task("waiting", total=total, node=host.node) for host in hosts}

        def report(host: Host, stage: str) -> None:
            done = stage not in STAGES
            step = STAGES.index(stage) if stage in STAGES else total
            colour = "red" if stage == "failed" else "green" if done else ""
            text = f"[{colour}]{stage}[/]" if colour else stage
            bar.update(ids[host.node], description=text, completed=step)
            if done:
                bar.stop_task(ids[host.node])

        yield report


def _summary(results: list[HostResult], verb: str) -> None:
    failed = [r for r in results if not r.ok]
    for result in failed:
        console.print(f"[red]error:[/] {result.error}")
    counts: dict[str, int] = {}
    for result in sorted(results, key=lambda r: r.action == "failed"):
        counts[result.action] = counts.get(result.action, 0) + 1
    said = ", ".join(f"{n} {action}" for action, n in counts.items())
    console.print(f"{verb} {len(results)} hosts: {said}")
    if failed:
        raise SystemExit(1)


def _join_token(token_file: str | None) -> str:
    """The join token from --token-file, SHOAL_AGENT_TOKEN or .shoal/join-token."""
    from shoal.cli_servers import read_join_token

    default = Path(".shoal") / "join-token"
    path = token_file or (str(default) if "SHOAL_AGENT_TOKEN" not in os.environ else None)
    try:
        token = read_join_token(path)
    except OSError as exc:
        raise click.ClickException(
            f"no join token: cannot read {path} ({exc.strerror or exc}); give --token-file "
            "FILE (the controller writes it) or set SHOAL_AGENT_TOKEN"
        ) from None
    if not token:
        raise click.ClickException("no join token: give --token-file FILE or set SHOAL_AGENT_TOKEN")
    return token.strip()


def run_deploy(
    inventory: Inventory,
    options: Any,
) -> list[HostResult]:
    """Deploy with a progress bar per host, and print what was done."""
    from shoal.connectors.ssh import STAGES, deploy_async

    with host_progress(list(inventory), len(STAGES)) as report:
        results = asyncio.run(deploy_async(inventory, options, report))
    return results


@click.command()
@click.argument("inventory", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--status", "show_status", is_flag=True, help="Show how each host stands; change nothing."
)
@click.option(
    "--controller",
    "controller_url",
    envvar="SHOAL_CONTROLLER",
    default=None,
    help="URL the hosts reach the controller at (default: http://ADDRESS:PORT, ADDRESS "
    "being this machine's address toward each host).",
)
@click.option(
    "--port",
    "controller_port",
    type=click.IntRange(1, 65535),
    default=8642,
    show_default=True,
    help="The controller's port, when --controller is not given.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The controller's join token (default .shoal/join-token, or SHOAL_AGENT_TOKEN). "
    "It stays here: each host gets its own credential.",
)
@click.option(
    "--wheels",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A folder of wheels of shoal's dependencies, for hosts without a package index "
    "(default: the host's index, else wheels fetched here for its platform).",
)
@click.option(
    "--supervisor",
    "supervision",
    type=click.Choice(["auto", "systemd", "detached"]),
    default="auto",
    show_default=True,
    help="What keeps the agent running: a systemd user unit where there is one, else "
    "shoal's detached supervisor with a pid file.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for each agent to connect.",
)
@_ssh
def deploy(
    inventory: str | None,
    show_status: bool,
    controller_url: str | None,
    controller_port: int,
    token_file: str | None,
    wheels: Path | None,
    supervision: str,
    timeout: float,
    known_hosts: str | None,
    no_host_key_check: bool,
) -> None:
    """Install shoal on every host of INVENTORY and start its agent there.

    Hosts are handled in parallel, each on its own; running it again leaves hosts
    that are right alone, repairs those whose agent is gone and upgrades those that
    run other code. With --status, only shows how each host stands.
    """
    testbed = _inventory(inventory)
    checked = _known_hosts(known_hosts, no_host_key_check)
    if show_status:
        _print_status(testbed, checked)
        return
    from shoal.connectors.ssh import DeployOptions

    options = DeployOptions(
        join_token=_join_token(token_file),
        controller=controller_url,
        controller_port=controller_port,
        wheels=wheels,
        known_hosts=checked,
        supervision=supervision,  # type: ignore[arg-type]
        online_timeout=timeout,
    )
    _remember(testbed)
    try:
        results = run_deploy(testbed, options)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _summary(results, "deployed")


def _print_status(testbed: Inventory, known_hosts: str | None) -> None:
    from shoal.connectors.ssh import status_async

    with console.status(f"asking {len(testbed)} hosts..."):
        rows = asyncio.run(status_async(testbed, known_hosts))
    table = Table("node", "address", "shoal", "supervisor", "agent", "controller")
    for row in rows:
        if not row.reachable:
            table.add_row(row.host.node, row.host.address, "[red]unreachable[/]", "", "", "")
            continue
        version = row.version or "[dim]not deployed[/]"
        if row.version and not row.current:
            version += " [yellow](other code than here)[/]"
        supervisor = f"{row.supervision} " if row.supervision else ""
        supervisor += "[green]running[/]" if row.supervised else "[red]stopped[/]"
        agent = f"pid {row.agent_pid}" if row.agent_pid else "[red]not running[/]"
        connected = "[green]connected[/]" if row.connected else "[red]not connected[/]"
        table.add_row(row.host.node, row.host.address, version, supervisor, agent, connected)
    console.print(table, soft_wrap=True)
    for row in rows:
        if row.error:
            console.print(f"[red]error:[/] {row.error}")


@click.command()
@click.argument("inventory", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--purge",
    is_flag=True,
    help="Also remove shoal's folder on each host, and free the nodes' names at the "
    "controller (when this folder or SHOAL_ENDPOINT/LOGIN/PASSWORD lead to it).",
)
@_ssh
@client_command
def undeploy(
    inventory: str | None,
    purge: bool,
    known_hosts: str | None,
    no_host_key_check: bool,
    endpoint: str | None,
    login: str | None,
    password: str | None,
) -> None:
    """Stop the agents (and their supervisors) on every host of INVENTORY.

    With --purge, also remove what deploy put there (the venv, wheels, the node's
    credential and the log) and forget the nodes at the controller, so that a new
    deploy enrolls them afresh.
    """
    from shoal.connectors.ssh import undeploy_async

    testbed = _inventory(inventory)
    checked = _known_hosts(known_hosts, no_host_key_check)
    with host_progress(list(testbed), 3) as report:
        results = asyncio.run(
            undeploy_async(testbed, purge=purge, known_hosts=checked, progress=report)
        )
    if purge:
        _forget([r.host.node for r in results if r.action == "removed"], endpoint, login, password)
    _summary(results, "undeployed")


def _forget(
    names: list[str], endpoint: str | None, login: str | None, password: str | None
) -> None:
    """Free purged nodes' names at the controller, if we can reach it as a user."""
    if not names:
        return
    from shoal.client.remote import RemoteClientException

    try:
        client = _client(endpoint, login, password)
        for name in names:
            try:
                client.forget_node(name)
            except RemoteClientException as exc:
                if exc.status_code != 404:  # never enrolled, or forgotten already: fine
                    raise
    except (click.ClickException, RemoteClientException) as exc:
        console.print(
            f"[yellow]the names stay enrolled at the controller ({', '.join(names)}): "
            f"{getattr(exc, 'message', exc)}; `shoal node forget NAME` frees one[/]"
        )
        return
    console.print(f"forgot {', '.join(names)} at the controller")


@click.command()
@click.argument("node")
@click.option("-i", "--inventory", type=click.Path(dir_okay=False), default=None)
@click.option("-n", "--lines", type=click.IntRange(0, 1_000_000), default=100, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the agent writes.")
@_ssh
def logs(
    node: str,
    inventory: str | None,
    lines: int,
    follow: bool,
    known_hosts: str | None,
    no_host_key_check: bool,
) -> None:
    """Print the log of NODE's agent, fetched over SSH from its host.

    The host is looked up in --inventory (default: SHOAL_INVENTORY, else the
    inventory deployed last from this folder).
    """
    from shoal.connectors.remote import HostError
    from shoal.connectors.ssh import agent_log

    testbed = _inventory(inventory)
    try:
        host = testbed.host(node)
    except KeyError:
        known = ", ".join(h.node for h in testbed) or "none"
        raise click.ClickException(
            f"{testbed.path} has no host for node {node!r} (its nodes: {known})"
        ) from None
    checked = _known_hosts(known_hosts, no_host_key_check)

    async def show() -> None:
        async for line in agent_log(host, lines=lines, follow=follow, known_hosts=checked):
            click.echo(line)

    try:
        asyncio.run(show())
    except HostError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
