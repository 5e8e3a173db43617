"""``Client``: the connection a task-graph program starts with.

>>> # client = Client()                  # SHOAL_ENDPOINT, or a local cluster of 2 nodes
>>> # client = Client("localhost", 8642) # a controller on this host (Rain's signature)
>>> # with client.new_session() as session: ...
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from shoal.client.remote import RemoteClient
from shoal.client.retry import RECONNECT_DEADLINE
from shoal.client.settings import lookup
from shoal.graph.session import Session
from shoal.graph.wire_transport import WireTransport

if TYPE_CHECKING:
    from shoal.client.local_cluster import LocalCluster

__all__ = ["DEFAULT_PORT", "Client"]

DEFAULT_PORT = 8642
log = logging.getLogger("shoal.graph")


class Client:
    """A connection to a shoal controller for task graphs.

    ``Client(host, port)`` connects to ``http://host:port``. Without arguments it
    uses the configured endpoint (``SHOAL_ENDPOINT``, ``.env``, a running ``shoal
    up``); when there is none, it starts a local cluster of ``nodes`` agents on this
    machine, stopped by :meth:`close` or at exit. ``endpoint=`` gives a full URL
    (``https://...`` for TLS), ``login=``/``password=`` the user (else the
    configured ``SHOAL_LOGIN``/``SHOAL_PASSWORD``). A controller that does not
    answer yet (it is restarting) is retried for up to ``retry_deadline``
    seconds before the connection fails.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        endpoint: str | None = None,
        login: str | None = None,
        password: str | None = None,
        nodes: int = 2,
        retry_deadline: float = RECONNECT_DEADLINE,
    ) -> None:
        self.cluster: LocalCluster | None = None
        if endpoint is None and host is not None:
            endpoint = f"http://{host}:{port or DEFAULT_PORT}"
        if endpoint is None and not lookup("SHOAL_ENDPOINT"):
            from shoal.client.local_cluster import LocalCluster

            log.info("no SHOAL_ENDPOINT: starting a local cluster of %d nodes", nodes)
            self.cluster = LocalCluster(nodes).start()
            endpoint, login, password = (
                self.cluster.endpoint,
                self.cluster.login,
                self.cluster.password,
            )
            atexit.register(self.close)
        try:
            self.remote = RemoteClient(endpoint, login, password, retry_deadline=retry_deadline)
            self.transport = WireTransport(
                self.remote.endpoint, self.remote.token(), self.remote.retry_deadline
            )
        except BaseException:
            self.close()
            raise

    @property
    def endpoint(self) -> str:
        """The controller's URL."""
        return self.remote.endpoint

    def new_session(self, name: str = "", default: bool = False) -> Session:
        """A new session (a context manager); ``default=True`` makes it the default one.

        The session's ``client`` is this client, as in Rain.
        """
        return Session(self.transport, name, default=default, client=self)

    def get_server_info(self) -> dict[str, Any]:
        """What Rain's ``get_server_info()`` gave: the governors (online nodes).

        ``{"governors": [{"governor_id": "host:port", "name": "node-0",
        "resources": {"cpus": 4}}, ...]}``: ``governor_id`` is the agent's address
        (its channel server, as Rain's was the governor's), the node's name when it has
        none. Rain's per-governor lists of tasks and objects are not given.
        """
        governors = []
        for node in self.remote.raw_nodes():
            address = node.get("address") or node["name"]
            governors.append(
                {
                    "governor_id": address,
                    "name": node["name"],
                    "resources": {"cpus": node.get("cpus", 1)},
                }
            )
        return {"governors": governors}

    def close(self) -> None:
        """Close the connection (ending its sessions) and stop a local cluster it started."""
        for part in ("transport", "remote"):
            closer = getattr(self, part, None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
            atexit.unregister(self.close)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "local cluster" if self.cluster is not None else self.remote.endpoint
        return f"<Client {where}>"
