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
import contextlib
import json
import shlex
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncssh
import httpx

from shoal.connectors.inventory import Host, Inventory
from shoal.connectors.remote import HostError, Probe, RemoteHost, unit_name
from shoal.connectors.wheel import build_wheel
from shoal.connectors.wheelhouse import Wheelhouse, WheelhouseError, cache_root

Progress = Callable[[Host, str], None]
Supervision = Literal["auto", "systemd", "detached"]

# What a deploy's progress goes through, in order (for a progress bar's length).
STAGES = (
    "connecting",
    "probing",
    "copying shoal",
    "installing",
    "enrolling",
    "starting the agent",
    "waiting for the agent",
)


@dataclass
class DeployOptions:
    """How to deploy: where the agents find the controller and how to reach the hosts."""

    join_token: str
    # The controller's URL as the hosts reach it. None: http://ADDRESS:controller_port,
    # ADDRESS being this machine's address on its SSH connection to each host.
    controller: str | None = None
    controller_port: int = 8642
    # A folder of wheels of shoal's dependencies for hosts without a package index.
    wheels: Path | None = None
    # asyncssh's known_hosts: a file, or None to skip host key checks (not safe).
    known_hosts: str | None = "~/.ssh/known_hosts"
    supervision: Supervision = "auto"
    connect_timeout: float = 20.0
    online_timeout: float = 60.0
    parallel: int = 32


@dataclass
class HostResult:
    """What happened on one host: ``action`` says what was done, ``error`` why it failed."""

    host: Host
    action: str
    error: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


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


def _known_hosts(value: str | None) -> Any:
    return None if value is None else str(Path(value).expanduser())


@contextlib.asynccontextmanager
async def connect(
    host: Host, known_hosts: str | None = "~/.ssh/known_hosts", timeout: float = 20.0
) -> AsyncIterator[RemoteHost]:
    """A connection to ``host`` as its inventory says (user, port, key, jump host),
    closed (with its jump host's) on leaving; HostError naming the host if it fails."""
    options: dict[str, Any] = {
        "known_hosts": _known_hosts(known_hosts),
        "connect_timeout": timeout,
        "keepalive_interval": 15,
    }
    if host.key_file:
        options["client_keys"] = [str(host.key_file)]
    async with contextlib.AsyncExitStack() as stack:
        try:
            first_hop = None
            if host.jump_host:
                jump_user, _, jump = host.jump_host.rpartition("@")
                jump_address, _, jump_port = jump.partition(":")
                first_hop = await stack.enter_async_context(
                    await asyncssh.connect(
                        jump_address,
                        port=int(jump_port or 22),
                        username=jump_user or host.user,
                        **options,
                    )
                )
                options["tunnel"] = first_hop
            conn = await stack.enter_async_context(
                await asyncssh.connect(host.address, port=host.port, username=host.user, **options)
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostError(
                f"{host.node}: a host key on the way to {host.address} is not trusted "
                f"({exc.reason}); add it to the known hosts (ssh-keyscan -p {host.port} "
                f"{host.address}), or give another known_hosts file"
            ) from None
        except asyncssh.PermissionDenied:
            raise HostError(
                f"{host.node}: {host.user or 'the SSH user'}@{host.address}:{host.port} "
                f"refused the key {host.key_file or '(the default keys)'}"
            ) from None
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {timeout:.0f} s"
            elif isinstance(exc, ConnectionRefusedError):
                reason = "connection refused (no SSH server listens there)"
            elif isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror
            via = f" (through {host.jump_host})" if host.jump_host else ""
            raise HostError(
                f"{host.node}: cannot connect to {host.address}:{host.port}{via}: {reason}"
            ) from None
        # Our address on the first hop: where the host (or its jump host's network)
        # sees this machine, and so where it may reach a controller here.
        local = (first_hop or conn).get_extra_info("sockname")[0]
        yield RemoteHost(host, conn, local)


def _shoal_wheel() -> Path:
    return build_wheel(cache_root() / "shoal")


class _Deployer:
    """The deploy of one inventory: what all its hosts share."""

    def __init__(self, options: DeployOptions, progress: Progress | None) -> None:
        self.options = options
        self.progress = progress or (lambda host, stage: None)
        self.wheel = _shoal_wheel()
        self.wheelhouse = Wheelhouse()
        self.user_wheels = sorted(options.wheels.glob("*.whl")) if options.wheels else []
        if options.wheels is not None and not self.user_wheels:
            raise ValueError(f"{options.wheels} holds no wheels (*.whl)")

    def controller_url(self, remote: RemoteHost) -> str:
        if self.options.controller:
            return self.options.controller.rstrip("/")
        local = remote.local_address
        if ":" in local:
            local = f"[{local}]"
        return f"http://{local}:{self.options.controller_port}"

    def desired(self, remote: RemoteHost, supervision: str) -> dict[str, Any]:
        host = remote.host
        # -v: the log `shoal logs` shows says when the agent connected and why it left.
        argv = ["-v", "--controller", self.controller_url(remote), "--name", host.node]
        argv += ["--workdir", str(remote.workdir)]
        for key, value in host.properties.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            argv += ["--property", f"{key}={text}"]
        return {
            "wheel": self.wheel.name,
            "python": host.python,
            "supervision": supervision,
            "argv": argv,
        }

    async def run_host(self, host: Host) -> HostResult:
        try:
            self.progress(host, "connecting")
            async with connect(host, self.options.known_hosts, self.options.connect_timeout) as r:
                return await self._deploy(r)
        except (HostError, WheelhouseError) as exc:
            self.progress(host, "failed")
            return HostResult(host, "failed", error=str(exc))
        except Exception as exc:  # one host's surprise must not stop the others
            self.progress(host, "failed")
            return HostResult(host, "failed", error=f"{host.node}: {type(exc).__name__}: {exc}")

    async def _deploy(self, remote: RemoteHost) -> HostResult:
        host = remote.host
        self.progress(host, "probing")
        probe = await remote.look()
        supervision = self._supervision(probe)
        spec = self.desired(remote, supervision)
        deployed = probe.deployed
        if deployed == spec and probe.raw["credential"]:
            if probe.supervised and probe.connected:
                self.progress(host, "up to date")
                return HostResult(host, "up to date")
            if not probe.supervised:
                await self._start(remote, supervision)
                await self._wait_connected(remote)
                self.progress(host, "repaired")
                return HostResult(host, "repaired", detail="the supervisor was gone; started it")
            # Supervised but not connected (yet): the supervisor restarts it; say so.
            self.progress(host, "up to date")
            return HostResult(host, "up to date", detail="the agent is not connected yet")
        action = "installed" if deployed is None else "upgraded"
        await remote.make_folders()
        if deployed is not None:
            await self._stop(remote, str(deployed.get("supervision", "detached")))
        self.progress(host, "copying shoal")
        present = set(probe.raw.get("wheels", []))
        await remote.put_files([self.wheel, *self.user_wheels], present)
        present |= {w.name for w in (self.wheel, *self.user_wheels)}
        self.progress(host, "installing")
        if not probe.raw["venv"] or (deployed or {}).get("python") != host.python:
            await remote.make_venv()
        await self._install(remote, probe, present)
        await remote.prune_wheels(self.wheel.name)
        if not probe.raw["credential"]:
            self.progress(host, "enrolling")
            await self._enroll(remote)
        await remote.write_file("agent.json", json.dumps({"argv": spec["argv"]}) + "\n")
        self.progress(host, "starting the agent")
        await self._start(remote, supervision)
        # Written last: a deploy cut short is not mistaken for a finished one.
        await remote.write_file("deploy.json", json.dumps(spec) + "\n")
        await self._wait_connected(remote)
        self.progress(host, action)
        return HostResult(host, action, detail=self.wheel.name)

    def _supervision(self, probe: Probe) -> str:
        choice = self.options.supervision
        if choice == "auto":
            return "systemd" if probe.raw["systemd"] else "detached"
        if choice == "systemd" and not probe.raw["systemd"]:
            raise HostError(
                f"{probe.raw['node']}: no systemd user manager there "
                "(systemctl --user fails); use the detached supervisor"
            )
        return choice

    async def _install(self, remote: RemoteHost, probe: Probe, present: set[str]) -> None:
        if self.user_wheels:
            await remote.pip_install(self.wheel.name, offline=True)
            return
        try:
            await remote.pip_install(self.wheel.name, offline=False)
            return
        except HostError as online_error:
            # No index reachable from the host (or it lacks a package): bring the
            # wheels from here, fetched for the host's platform.
            self.progress(remote.host, "fetching wheels for the host")
            try:
                folder = await self.wheelhouse.for_host(probe.raw)
            except WheelhouseError as exc:
                raise HostError(f"{online_error}; {exc}") from None
        self.progress(remote.host, "copying wheels")
        await remote.put_files(sorted(folder.glob("*.whl")), present)
        self.progress(remote.host, "installing")
        await remote.pip_install(self.wheel.name, offline=True)

    async def _enroll(self, remote: RemoteHost) -> None:
        url = f"{self.controller_url(remote)}/api/nodes/{remote.host.node}/enroll"
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.post(
                    url, headers={"Authorization": f"Bearer {self.options.join_token}"}
                )
        except httpx.HTTPError as exc:
            raise HostError(
                f"{remote.host.node}: cannot reach the controller at {url} to enroll "
                f"the node: {exc}"
            ) from None
        if response.status_code == 409:
            raise HostError(
                f"{remote.host.node}: the node is enrolled already, but the host has no "
                f"credential for it; `shoal node forget {remote.host.node}` frees the name"
            )
        if response.status_code == 401:
            raise HostError(f"{remote.host.node}: the controller refused the join token")
        if response.status_code != 201:
            raise HostError(
                f"{remote.host.node}: enrolling failed: HTTP {response.status_code} "
                f"{response.text[:200]}"
            )
        credential = response.json()["credential"]
        await remote.write_file("node-credential", credential + "\n", mode=0o600)

    async def _start(self, remote: RemoteHost, supervision: str) -> None:
        status = shlex.quote(str(remote.workdir / "agent-status.json"))
        await remote.run(f"rm -f {status}", "clearing the agent's status")
        if supervision == "systemd":
            await remote.start_systemd()
        else:
            await remote.stop_detached()
            await remote.start_detached()

    async def _stop(self, remote: RemoteHost, supervision: str) -> None:
        if supervision == "systemd":
            await remote.stop_systemd(remove=False)
        await remote.stop_detached()

    async def _wait_connected(self, remote: RemoteHost) -> None:
        """Until the agent says the controller has it (_start removed any older word)."""
        self.progress(remote.host, "waiting for the agent")
        path = str(remote.workdir / "agent-status.json")
        deadline = time.monotonic() + self.options.online_timeout
        async with remote.conn.start_sftp_client() as sftp:
            while time.monotonic() < deadline:
                with contextlib.suppress(asyncssh.SFTPError, ValueError):
                    async with sftp.open(path) as file:
                        if json.loads(await file.read()).get("connected"):
                            return
                await asyncio.sleep(0.3)
        log = await remote.run(
            f"tail -n 5 {shlex.quote(str(remote.workdir / 'agent.log'))} 2>/dev/null || true",
            "reading the agent's log",
        )
        raise HostError(
            f"{remote.host.node}: the agent did not connect to {self.controller_url(remote)} "
            f"within {self.options.online_timeout:.0f} s; its log ends: {log.strip()[-600:]}"
        )


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
    deployer = _Deployer(options, progress)
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
    current = _shoal_wheel().name

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
