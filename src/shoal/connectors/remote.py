"""One host of an inventory, reached over SSH: what a deploy does on it.

Everything runs through one asyncssh connection per host: commands through a
POSIX shell, files through SFTP. The host's folder (``workdir`` in the
inventory) holds all of it::

    venv/               the agent's Python environment
    wheels/             shoal's wheel and, on offline hosts, its dependencies'
    agent.json          the agent's arguments (read by shoal.agent.supervisor)
    deploy.json         what was deployed last: a deploy compares it to decide
    node-credential     the node's own credential (0600); never the join token
    agent.log           the agent's and the supervisor's output
    agent-status.json   whether the agent is connected to the controller now
    supervisor.pid      locked by a live detached supervisor
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from shoal.connectors.inventory import Host

PROBE_SOURCE = resources.files("shoal.connectors").joinpath("probe.py").read_text("utf-8")
UNIT_PREFIX = "shoal-agent-"


class HostError(RuntimeError):
    """A step failed on one host; the message names the host and the step."""


def unit_name(node: str) -> str:
    """The systemd user unit of ``node``'s agent (characters systemd dislikes made ``_``)."""
    return UNIT_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", node) + ".service"


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(kept[-lines:]) or "no output"


@dataclass
class Probe:
    """What the probe found on a host (see shoal/connectors/probe.py)."""

    raw: dict[str, Any]

    @property
    def workdir(self) -> PurePosixPath:
        return PurePosixPath(self.raw["workdir"])

    @property
    def deployed(self) -> dict[str, Any] | None:
        return self.raw.get("deployed")

    @property
    def supervised(self) -> bool:
        return bool(self.raw.get("supervised"))

    @property
    def connected(self) -> bool:
        status = self.raw.get("status") or {}
        return bool(status.get("connected"))


class RemoteHost:
    """A connected host: runs the steps of a deploy there."""

    def __init__(
        self, host: Host, conn: asyncssh.SSHClientConnection, local_address: str = ""
    ) -> None:
        self.host = host
        self.conn = conn
        self.local_address = local_address  # this machine's address toward the host
        self.probe: Probe | None = None

    @property
    def workdir(self) -> PurePosixPath:
        assert self.probe is not None, "probe the host first"
        return self.probe.workdir

    @property
    def python(self) -> str:
        return str(self.workdir / "venv" / "bin" / "python")

    async def run(self, command: str, what: str, *, input: str | None = None) -> str:
        """Run ``command`` in the host's shell; HostError naming ``what`` if it fails."""
        try:
            done = await self.conn.run(command, input=input, check=False)
        except (asyncssh.Error, OSError) as exc:
            raise HostError(f"{self.host.node}: {what}: {exc}") from None
        if done.exit_status != 0:
            output = f"{done.stderr or ''}\n{done.stdout or ''}"
            if done.exit_status == 127:
                output = f"command not found ({_tail(output, 1)})"
            raise HostError(f"{self.host.node}: {what} failed: {_tail(str(output))}")
        return str(done.stdout or "")

    async def look(self) -> Probe:
        """Probe the host: python, platform, what is deployed and running."""
        command = " ".join(
            shlex.quote(part)
            for part in (
                self.host.python,
                "-",
                "probe",
                self.host.workdir,
                self.host.node,
                unit_name(self.host.node),
            )
        )
        out = await self.run(command, f"running {self.host.python} on the host", input=PROBE_SOURCE)
        try:
            self.probe = Probe(json.loads(out))
        except ValueError:
            raise HostError(
                f"{self.host.node}: {self.host.python} printed no report: {_tail(out)}"
            ) from None
        version = self.probe.raw["python"]
        if tuple(version[:2]) < (3, 11):
            raise HostError(
                f"{self.host.node}: {self.host.python} is Python "
                f"{'.'.join(map(str, version))}; shoal needs 3.11 or newer "
                "(set `python` for this host in the inventory)"
            )
        return self.probe

    async def make_folders(self) -> None:
        q = shlex.quote
        await self.run(
            f"mkdir -p {q(str(self.workdir / 'wheels'))} && chmod 700 {q(str(self.workdir))}",
            f"making {self.workdir}",
        )

    async def put_files(self, files: list[Path], present: set[str]) -> int:
        """Copy ``files`` into ``wheels/`` unless a file of that name is there; how many."""
        missing = [f for f in files if f.name not in present]
        if not missing:
            return 0
        try:
            async with self.conn.start_sftp_client() as sftp:
                for path in missing:
                    target = str(self.workdir / "wheels" / path.name)
                    await sftp.put(str(path), target + ".partial")
                    await sftp.posix_rename(target + ".partial", target)
        except (asyncssh.Error, OSError) as exc:
            raise HostError(f"{self.host.node}: copying wheels: {exc}") from None
        return len(missing)

    async def write_file(self, name: str, text: str, mode: int = 0o644) -> None:
        """Write ``text`` to ``workdir/name`` whole (created with ``mode`` before any byte)."""
        target = str(self.workdir / name)
        try:
            async with self.conn.start_sftp_client() as sftp:
                attrs = asyncssh.SFTPAttrs(permissions=mode)
                async with sftp.open(target + ".partial", "w", attrs) as file:
                    await file.write(text)
                await sftp.chmod(target + ".partial", mode)
                await sftp.posix_rename(target + ".partial", target)
        except (asyncssh.Error, OSError) as exc:
            raise HostError(f"{self.host.node}: writing {target}: {exc}") from None

    async def make_venv(self) -> None:
        q = shlex.quote
        try:
            await self.run(
                f"{q(self.host.python)} -m venv --clear {q(str(self.workdir / 'venv'))}",
                f"making a venv with {self.host.python}",
            )
        except HostError as exc:
            raise HostError(f"{exc} (on Debian or Ubuntu: apt install python3-venv)") from None

    async def pip_install(self, wheel: str, *, offline: bool) -> None:
        """Install shoal's wheel into the venv, its dependencies from ``wheels/``
        and, unless ``offline``, from the host's own package index."""
        q = shlex.quote
        wheels = str(self.workdir / "wheels")
        index = "--no-index" if offline else "--retries 1 --timeout 15"
        await self.run(
            f"{q(self.python)} -m pip install --disable-pip-version-check --quiet "
            f"{index} --find-links {q(wheels)} {q(wheels + '/' + wheel)}",
            "installing shoal with pip" + (" (offline)" if offline else ""),
        )

    async def prune_wheels(self, keep: str) -> None:
        """Remove shoal wheels other than ``keep`` (earlier deploys')."""
        q = shlex.quote
        folder = str(self.workdir / "wheels")
        await self.run(
            f"cd {q(folder)} && for w in shoal-*.whl; do "
            f'[ "$w" = {q(keep)} ] || rm -f -- "$w"; done',
            "removing old wheels",
        )

    async def stop_detached(self) -> bool:
        """Stop a detached supervisor and its agent; whether anything ran."""
        q = shlex.quote
        out = await self.run(
            f"{q(self.host.python)} - stop {q(str(self.workdir))}",
            "stopping the agent",
            input=PROBE_SOURCE,
        )
        return bool(json.loads(out or "{}").get("stopped"))

    async def start_detached(self) -> None:
        q = shlex.quote
        await self.run(
            f"{q(self.python)} -m shoal.agent.supervisor --workdir {q(str(self.workdir))} --detach",
            "starting the agent's supervisor",
        )

    def unit_text(self) -> str:
        workdir = str(self.workdir)
        return (
            "[Unit]\n"
            f"Description=shoal agent {self.host.node}\n"
            "After=network-online.target\n"
            "Wants=network-online.target\n\n"
            "[Service]\n"
            f"ExecStart={_systemd_quote(self.python)} -m shoal.agent.supervisor "
            f"--workdir {_systemd_quote(workdir)} --exec\n"
            "Restart=always\n"
            "RestartSec=2\n"
            f"StandardOutput=append:{workdir}/agent.log\n"
            f"StandardError=append:{workdir}/agent.log\n\n"
            "[Install]\n"
            "WantedBy=default.target\n"
        )

    async def start_systemd(self) -> None:
        """Install the agent's systemd user unit and (re)start it; lingering keeps it
        running without a login."""
        q = shlex.quote
        unit = unit_name(self.host.node)
        text = self.unit_text()
        await self.run(
            'mkdir -p "$HOME/.config/systemd/user" && '
            f'cat > "$HOME/.config/systemd/user/{unit}" && '
            '(loginctl enable-linger "$(id -un)" 2>/dev/null || true) && '
            f"systemctl --user daemon-reload && systemctl --user enable {q(unit)} && "
            f"systemctl --user restart {q(unit)}",
            "starting the agent's systemd unit",
            input=text,
        )

    async def stop_systemd(self, *, remove: bool) -> None:
        q = shlex.quote
        unit = unit_name(self.host.node)
        command = f"systemctl --user disable --now {q(unit)} 2>/dev/null || true"
        if remove:
            command += (
                f' ; rm -f "$HOME/.config/systemd/user/{unit}" ; systemctl --user daemon-reload'
            )
        await self.run(command, "stopping the agent's systemd unit")

    async def remove_workdir(self) -> None:
        folder = str(self.workdir)
        # Only a folder a deploy made: a mistyped workdir must not remove a home.
        probe = self.probe
        made = probe is not None and (probe.deployed is not None or probe.raw["venv"])
        if folder in ("/", "") or not made:
            raise HostError(f"{self.host.node}: {folder} holds no deploy of shoal; left alone")
        await self.run(f"rm -rf -- {shlex.quote(folder)}", f"removing {folder}")


def _systemd_quote(word: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./@:+=-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
