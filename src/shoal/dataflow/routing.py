"""Where a pipe's values go: the addresses of the job host that receives them,
and the coordinator as a relay for senders that cannot reach it."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from shoal.dataflow.job_state import JobState
from shoal.dataflow.network import Network
from shoal.dataflow.transport import Route


def pipe_route(
    network: Network,
    states: Mapping[int, JobState],
    pipe_id: int,
    *,
    loopback: bool,
    relay: tuple[str, int] | None,
) -> Route | None:
    """The route of pipe ``pipe_id`` now; None while its receiver is not connected.

    The receiver's loopback addresses come first when both ends share a node
    (or every node is this machine), its other addresses first otherwise.
    """
    ends = network.pipes[pipe_id]
    dest, src = states[ends.destination], states[ends.source]
    if dest.conn is None:
        return None
    loop = [a for a in dest.addresses if a.startswith("127.")] or ["127.0.0.1"]
    remote = [a for a in dest.addresses if not a.startswith("127.")]
    same_node = dest.node == src.node or loopback
    hosts = (*loop, *remote) if same_node else (*remote, *loop)
    return Route(hosts, dest.port, dest.job.id, dest.generation, relay)


def client_addresses(network: Network, endpoint: str) -> list[str]:
    """Where job hosts may reach this process: the network's CLIENT_IP, the
    address that routes to the controller (at ``endpoint``), then loopback."""
    found = []
    if network.client_ip:
        found.append(network.client_ip)
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host.strip("[]"), 9))  # no packet: just picks the route
            found.append(probe.getsockname()[0])
    except OSError:
        pass
    found.append("127.0.0.1")
    return list(dict.fromkeys(found))
