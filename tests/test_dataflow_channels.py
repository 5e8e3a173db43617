"""The same dataflow pipes over the direct path and through the controller's relay.

Two agents; with ``relay`` both run ``--no-data-server``, so no channel can go
to them directly and every pipe goes through the controller, with no code of
the dataflow's own for it. Values arrive whole and in order, the pipe's end
after the last of them, from a job on a node to a job on another node and on
to a LOCAL job in the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflow_helpers import blocks_network, rows
from processes import start_agent
from shoal import LocalCluster
from shoal.dataflow import Coordinator, load_network

COUNT = 500
NODES = ("agent-a", "agent-b")
PATHS = {"direct": (), "relay": ("--no-data-server",)}

NETWORK = blocks_network(4096, COUNT)


@pytest.fixture(params=sorted(PATHS))
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    logs = tmp_path / "agents"
    logs.mkdir()
    with LocalCluster([], workdir=tmp_path / "cluster") as c:
        for name in NODES:
            agent = start_agent(
                c.endpoint, c.agent_token, name, logs / f"{name}.log", *PATHS[request.param]
            )
            c.agents[name] = agent  # stopped with the cluster
        c.client().wait_for_nodes(NODES, 30)
        yield c


@pytest.mark.timeout(120)
def test_values_arrive_whole_and_in_order(cluster: LocalCluster, tmp_path: Path) -> None:
    folder = tmp_path / "two_agents"
    folder.mkdir()
    (folder / "config.py").write_text(NETWORK)
    output = tmp_path / "out"
    with Coordinator(
        load_network(folder), cluster.client(), output, loopback=True, echo=False
    ) as run:
        assert run.placements() == {1: "agent-a", 2: "agent-b", 3: "client"}
        assert run.wait(90), f"the network did not finish: {run.summary()}"
        assert run.error is None
    received = [int(row[0]) for row in rows(output / "3" / "received.csv")[1:]]
    assert received == list(range(COUNT))
