"""Settings of one agent process."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote


def default_name() -> str:
    return socket.gethostname()


def host_properties() -> dict[str, str]:
    """What lets a client find this node by address: its host name and IP addresses."""
    import psutil

    addresses = sorted(
        {
            a.address.split("%")[0]
            for nic in psutil.net_if_addrs().values()
            for a in nic
            if a.family in (socket.AF_INET, socket.AF_INET6)
        }
    )
    return {"hostname": socket.gethostname(), "addresses": ",".join(addresses)}


def default_architecture() -> str:
    machine = platform.machine().lower()
    return {
        "x86_64": "linux/amd64",
        "amd64": "linux/amd64",
        "aarch64": "linux/arm64",
        "arm64": "linux/arm64",
        "armv7l": "linux/arm/v7",
    }.get(machine, machine or "unknown")


@dataclass
class AgentConfig:
    """``join_token`` admits a new node; once enrolled, the node shows its own
    credential (kept in ``credential_path``) and needs the join token only to
    enroll again (e.g. with a controller that has a new database)."""

    controller: str  # http(s)://host:port of the controller
    join_token: str | None = None
    name: str = field(default_factory=default_name)
    properties: dict[str, str] = field(default_factory=dict)
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    architecture: str = field(default_factory=default_architecture)
    max_backoff: float = 2.0
    workdir: str | None = None
    data_server: bool = True  # serve channels to peers (off: through the controller)
    # Where the channel server listens ("": the address this agent reaches the controller from).
    data_address: str = ""
    # Run each shoal user's graph tasks under an OS user of their own (needs root).
    isolate_users: bool = False

    @property
    def credential_path(self) -> Path:
        """Where this node keeps its credential: in its workdir, else in the
        user's state folder (it must outlive the agent process)."""
        if self.workdir is not None:
            return Path(self.workdir) / "node-credential"
        state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        return Path(state) / "shoal" / "agents" / quote(self.name, safe="") / "node-credential"

    @property
    def ws_url(self) -> str:
        base = self.controller.rstrip("/")
        if base.startswith("https://"):
            base = "wss://" + base.removeprefix("https://")
        elif base.startswith("http://"):
            base = "ws://" + base.removeprefix("http://")
        return base + "/api/agents/ws"
