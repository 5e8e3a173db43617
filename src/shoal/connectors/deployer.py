"""The steps of a deploy on each host, and what one deploy's hosts share.

:mod:`shoal.connectors.ssh` is the public face; this module does the work for
one host at a time (see that module's docstring for the steps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncssh
import httpx

from shoal.connectors.inventory import Host
from shoal.connectors.remote import HostError, Probe, RemoteHost, connect
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


def shoal_wheel() -> Path:
    """This install's wheel, built once per content into the cache."""
    return build_wheel(cache_root() / "shoal")


class Deployer:
    """Deploys one inventory: what all its hosts share (the wheel, the fetched wheels),
    and the steps of a deploy on each host (:meth:`run_host`)."""

    def __init__(self, options: DeployOptions, progress: Progress | None) -> None:
        self.options = options
        self.progress = progress or (lambda host, stage: None)
        self.wheel = shoal_wheel()
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
