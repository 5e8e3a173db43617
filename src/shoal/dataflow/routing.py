"""Where a pipe's values go: the endpoint of the job host at its other end."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from shoal.dataflow.job_state import JobState
from shoal.dataflow.network import Network
from shoal.dataflow.transport import LOCAL_NODE, Route, endpoint_name


def pipe_route(
    network: Network, states: Mapping[int, JobState], pipe_id: int, token: bytes
) -> Route | None:
    """Where pipe ``pipe_id``'s sender sends now; None while its receiver is not connected.

    To the receiver's ``in`` endpoint on its node, or in process between two
    LOCAL jobs; a LOCAL receiver of a job on a node opens the channel itself
    (``accept``: the sender waits for it).
    """
    ends = network.pipes[pipe_id]
    dest, src = states[ends.destination], states[ends.source]
    if dest.local and not src.local:
        return Route(LOCAL_NODE, "", dest.job.id, dest.generation, accept=True)
    if dest.conn is None:
        return None
    node = LOCAL_NODE if dest.local else dest.node
    assert node is not None
    endpoint = endpoint_name(token, "in", dest.job.id, dest.generation)
    return Route(node, endpoint, dest.job.id, dest.generation)


def source_route(
    network: Network, states: Mapping[int, JobState], pipe_id: int, token: bytes
) -> Route | None:
    """Where a LOCAL receiver of pipe ``pipe_id`` takes it from: the sender's ``out``
    endpoint on its node. None when the receiver is not LOCAL, the sender is,
    or the sender is not connected."""
    ends = network.pipes[pipe_id]
    dest, src = states[ends.destination], states[ends.source]
    if not dest.local or src.local or src.conn is None or src.node is None:
        return None
    endpoint = endpoint_name(token, "out", src.job.id, src.generation)
    return Route(src.node, endpoint, src.job.id, src.generation)


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
