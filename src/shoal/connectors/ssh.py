"""Put shoal agents on the hosts of an inventory over SSH, keep them running, take them off.

From a script::

    from shoal.connectors.inventory import load_inventory
    from shoal.connectors.ssh import DeployOptions, deploy, undeploy

    testbed = load_inventory("testbed.toml")
    for result in deploy(testbed, DeployOptions(controller="http://10.0.0.1:8642",
                                                join_token=open("join-token").read().strip())):
        print(result.host.node, result.action, result.error or "")

Every host is handled at once, each on its own: one that is down or refuses the
key fails alone, with an error that names it, while the others deploy. For each
host a deploy

1. probes it (one round trip: its python, platform, and what runs there now);
2. leaves it alone if what it runs is what would be deployed ("up to date"),
   or only starts the supervisor again if that is gone ("repaired");
3. otherwise copies this install of shoal as a wheel, makes a venv, installs it
   with its dependencies from the host's package index, or, when the host has
   none it can reach, from wheels this machine fetched for it (or the user's
   ``wheels`` folder);
4. enrolls the node: the controller makes its credential, which goes straight
   into the host's folder (mode 0600); the join token never reaches the host;
5. starts the agent under a systemd user unit when the host has a systemd user
   manager, otherwise under shoal's own detached supervisor, and waits until the
   agent reports itself connected.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from shoal.connectors.deployer import (
    STAGES,
    Deployer,
    DeployOptions,
    HostResult,
    Progress,
    shoal_wheel,
)
from shoal.connectors.inventory import Host, Inventory
from shoal.connectors.remote import HostError, connect, unit_name


@dataclass
class HostStatus:
    """How one host stands (``shoal deploy --status``)."""

    host: Host
    reachable: bool
    error: str | None = None
    version: str = ""  # the shoal version deployed there
    current: bool = False  # it is what a deploy from here would put there
    supervision: str = ""
    supervised: bool = False
    agent_pid: int | None = None
    connected: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


async def _each(hosts: Iterable[Host], parallel: int, work: Callable[[Host], Any]) -> list[Any]:
    """``work(host)`` for every host, at most ``parallel`` at once, results in order."""
    gate = asyncio.Semaphore(parallel)

    async def one(host: Host) -> Any:
        async with gate:
            return await work(host)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(host)) for host in hosts]
    return [task.result() for task in tasks]


async def deploy_async(
    inventory: Inventory | Iterable[Host],
    options: DeployOptions,
    progress: Progress | None = None,
) -> list[HostResult]:
    """Deploy agents to every host; one result per host, in the inventory's order."""
    deployer = Deployer(options, progress)
    return await _each(inventory, options.parallel, deployer.run_host)


def deploy(
    inventory: Inventory | Iterable[Host],
    options: DeployOptions,
    progress: Progress | None = None,
) -> list[HostResult]:
    """:func:`deploy_async` for scripts without an event loop."""
    return asyncio.run(deploy_async(inventory, options, progress))


async def status_async(
    inventory: Inventory | Iterable[Host],
    known_hosts: str | None = "~/.ssh/known_hosts",
    timeout: float = 20.0,
) -> list[HostStatus]:
    """How each host stands: installed version, supervisor, agent, connection."""
    current = shoal_wheel().name

    async def one(host: Host) -> HostStatus:
        try:
            async with connect(host, known_hosts, timeout) as remote:
                probe = await remote.look()
        except HostError as exc:
            return HostStatus(host, reachable=False, error=str(exc))
        deployed = probe.deployed or {}
        wheel = str(deployed.get("wheel", ""))
        return HostStatus(
            host,
            reachable=True,
            version=wheel.removeprefix("shoal-").split("-")[0] if wheel else "",
            current=wheel == current,
            supervision=str(deployed.get("supervision", "")),
            supervised=probe.supervised,
            agent_pid=probe.raw.get("agent_pid"),
            connected=probe.connected and probe.supervised,
            raw=probe.raw,
        )

    return await _each(inventory, 32, one)


def status(
    inventory: Inventory | Iterable[Host], known_hosts: str | None = "~/.ssh/known_hosts"
) -> list[HostStatus]:
    """:func:`status_async` for scripts without an event loop."""
    return asyncio.run(status_async(inventory, known_hosts))


async def undeploy_async(
    inventory: Inventory | Iterable[Host],
    *,
    purge: bool = False,
    known_hosts: str | None = "~/.ssh/known_hosts",
    timeout: float = 20.0,
    progress: Progress | None = None,
) -> list[HostResult]:
    """Stop every host's agent and supervisor; ``purge`` also removes its folder
    (venv, wheels, credential, log)."""
    report = progress or (lambda host, stage: None)

    async def one(host: Host) -> HostResult:
        try:
            report(host, "connecting")
            async with connect(host, known_hosts, timeout) as remote:
                probe = await remote.look()
                if probe.deployed is None and not probe.raw["venv"]:
                    report(host, "nothing deployed")
                    return HostResult(host, "nothing deployed")
                report(host, "stopping")
                if (probe.deployed or {}).get("supervision") == "systemd":
                    await remote.stop_systemd(remove=True)
                await remote.stop_detached()
                if purge:
                    report(host, "removing")
                    await remote.remove_workdir()
                    report(host, "removed")
                    return HostResult(host, "removed")
                report(host, "stopped")
                return HostResult(host, "stopped")
        except HostError as exc:
            report(host, "failed")
            return HostResult(host, "failed", error=str(exc))

    return await _each(inventory, 32, one)


def undeploy(
    inventory: Inventory | Iterable[Host],
    *,
    purge: bool = False,
    known_hosts: str | None = "~/.ssh/known_hosts",
) -> list[HostResult]:
    """:func:`undeploy_async` for scripts without an event loop."""
    return asyncio.run(undeploy_async(inventory, purge=purge, known_hosts=known_hosts))


async def agent_log(
    host: Host,
    *,
    lines: int = 100,
    follow: bool = False,
    known_hosts: str | None = "~/.ssh/known_hosts",
    timeout: float = 20.0,
) -> AsyncIterator[str]:
    """The last ``lines`` of the agent's log on ``host``, and with ``follow`` what it
    writes from then on (until the caller stops iterating)."""
    async with connect(host, known_hosts, timeout) as remote:
        probe = await remote.look()
        path = str(probe.workdir / "agent.log")
        if probe.deployed is None and not probe.raw["venv"]:
            raise HostError(f"{host.node}: no agent is deployed in {probe.workdir}")
        flag = "-F " if follow else ""
        process = await remote.conn.create_process(
            f"tail -n {int(lines)} {flag}{shlex.quote(path)}", stderr=asyncssh.STDOUT
        )
        try:
            async for line in process.stdout:
                yield str(line).rstrip("\n")
        finally:
            process.close()


__all__ = [
    "STAGES",
    "DeployOptions",
    "HostError",
    "HostResult",
    "HostStatus",
    "agent_log",
    "connect",
    "deploy",
    "deploy_async",
    "status",
    "status_async",
    "undeploy",
    "undeploy_async",
    "unit_name",
]
