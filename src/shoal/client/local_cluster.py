"""A whole shoal on this machine: a controller and named agents as processes."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shoal.client.remote import RemoteClient
from shoal.connectors.local import ControllerProcess, start_agent, start_controller, stop_process


class LocalCluster:
    """A controller on a free loopback port with SQLite, plus one agent per node name.

    ::

        with LocalCluster(["server", "client-1"]) as cluster:
            client = cluster.client()
            print(client.get_nodes())

    ``nodes`` is a list of names or a count (``node-0`` ... ``node-N-1``).
    Everything lives in ``workdir`` (a temporary folder unless given): the
    database, the join token (``join-token``), one folder per agent under
    ``agents/`` (with its node credential) and one log file per process under
    ``logs/``. A node silent for ``heartbeat_timeout`` seconds is suspect; for
    ``lost_timeout``, its running work is lost (shorter than a real controller's
    default: these nodes are local processes).
    """

    def __init__(
        self,
        nodes: Iterable[str] | int = 1,
        *,
        workdir: str | Path | None = None,
        db_url: str | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        login: str = "shoal",
        password: str | None = None,
        properties: dict[str, dict[str, Any]] | None = None,
        heartbeat_interval: float = 0.5,
        heartbeat_timeout: float = 3.0,
        lost_timeout: float = 10.0,
        cpus: int | None = None,
    ) -> None:
        names = [f"node-{i}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique: {names}")
        self.node_names = names
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="shoal-cluster-")).resolve()
        self.db_url = db_url or f"sqlite+aiosqlite:///{self.workdir / 'shoal.db'}"
        self.port = port
        self.host = host  # where the controller listens
        self.login = login
        self.password = password or secrets.token_urlsafe(12)
        self.properties = properties or {}
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.lost_timeout = max(lost_timeout, heartbeat_timeout)
        self.cpus = cpus  # of each agent (None: this machine's)
        self.controller: ControllerProcess | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.agent_token = secrets.token_urlsafe(32)
        # The controller writes the join token here (0600); agents read it from here.
        self.token_file = self.workdir / "join-token"
        self._clients: list[RemoteClient] = []

    @property
    def endpoint(self) -> str:
        if self.controller is None:
            raise RuntimeError("the cluster is not started")
        # Listening on every address: this machine's clients use loopback.
        return self.controller.endpoint.replace("://0.0.0.0:", "://127.0.0.1:")

    def start(self, timeout: float = 60.0) -> LocalCluster:
        try:
            self.start_controller(timeout)
            for name in self.node_names:
                self.start_agent(name)
            self.client().wait_for_nodes(self.node_names, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_controller(self, timeout: float = 60.0) -> None:
        self.controller = start_controller(
            db_url=self.db_url,
            log_path=self.workdir / "logs" / "controller.log",
            host=self.host,
            port=self.port,
            agent_token=self.agent_token,
            token_file=self.token_file,
            users=[(self.login, self.password)],
            heartbeat_interval=self.heartbeat_interval,
            heartbeat_timeout=self.heartbeat_timeout,
            lost_timeout=self.lost_timeout,
            timeout=timeout,
        )
        # A restarted controller must come back where the agents look for it.
        self.port = int(self.controller.endpoint.rsplit(":", 1)[1])

    def stop_controller(self, sig: int = signal.SIGTERM) -> None:
        if self.controller is not None:
            if sig == signal.SIGTERM:
                stop_process(self.controller.proc)
            else:
                self.controller.proc.send_signal(sig)
                self.controller.proc.wait()
            self.controller = None

    def start_agent(self, name: str, properties: dict[str, Any] | None = None) -> None:
        if name not in self.node_names:
            self.node_names.append(name)
        self.agents[name] = start_agent(
            endpoint=self.endpoint,
            token_file=self.token_file,
            name=name,
            log_path=self.workdir / "logs" / f"agent-{name}.log",
            properties=properties if properties is not None else self.properties.get(name),
            workdir=self.workdir / "agents" / name,
            cpus=self.cpus,
        )

    def kill_agent(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill an agent process (SIGKILL by default, like a crashed node)."""
        proc = self.agents.pop(name)
        proc.send_signal(sig)
        proc.wait()

    def client(self, login: str | None = None, password: str | None = None) -> RemoteClient:
        client = RemoteClient(self.endpoint, login or self.login, password or self.password)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.agents.values():
            stop_process(proc)
        self.agents.clear()
        self.stop_controller()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def local_cluster(nodes: Iterable[str] | int = 1, **options: Any) -> Iterator[RemoteClient]:
    """A connected client to a fresh local cluster, in one line::

        with shoal.local_cluster(nodes=["snl-server-5", "raspi-1"]) as client:
            ...

    The cluster is reachable as ``client.cluster``.
    """
    with LocalCluster(nodes, **options) as cluster:
        client = cluster.client()
        client.cluster = cluster  # type: ignore[attr-defined]
        yield client
