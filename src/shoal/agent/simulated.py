"""Simulated agents: many nodes in one process, each speaking the real agent protocol.

A :class:`SimulatedNode` opens its own WebSocket to ``/api/agents/ws`` and says
what a real agent says (``Hello`` with the join token, then its own node
credential; heartbeats; deployment states, step results and flag calls), but
runs no executor process: a pipeline's flag tasks become ``FlagCall`` messages
on the node's connection, as a real agent relays its executor's calls, and any
other task runs inline (meant for trivial steps). So one process holds
hundreds of nodes and what is measured is the controller, not how many
processes the machine can start.

:class:`Swarm` runs a set of them on an event loop in a background thread, for
benchmarks (``benchmarks/swarm.py``) and tests, and for an operator sizing a
controller before the testbed exists.

The pieces: ``simulated_node`` (one node and its connection),
``simulated_deployment`` (a pipeline run on it), ``swarm`` (many nodes, one
heartbeat wheel). Import them from here.
"""

from __future__ import annotations

from shoal.agent.simulated_deployment import WAIT_HOLD, FlagError, SimulatedDeployment
from shoal.agent.simulated_node import CLOSE_REFUSED, SimulatedNode, SwarmStats
from shoal.agent.swarm import HeartbeatWheel, Swarm, node_names

__all__ = [
    "CLOSE_REFUSED",
    "WAIT_HOLD",
    "FlagError",
    "HeartbeatWheel",
    "SimulatedDeployment",
    "SimulatedNode",
    "Swarm",
    "SwarmStats",
    "node_names",
]
