"""One controller, many nodes (issue 13, test 1): 300 simulated agents, each on its
own WebSocket speaking the real agent protocol, all online; the seed's flags
barrier (1 server + 299 clients) finishes with exactly the right counts; no
node is marked lost while the controller is busy.

The nodes are shoal.agent.simulated's (no executor processes), so the machine's
process count is not what is tested; the controller is a real `shoal
controller` process with a local cluster's short liveness timeouts (suspect
after 3 s of silence, lost after 10 s), the ones that lost nodes at 100 real
agents before.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from flags_experiment import load_example
from scraped import metric_value
from shoal import Experiment, ExperimentStatus, FlagValues, LocalCluster
from shoal.agent.simulated import Swarm
from waiting import wait_until

NODES = 300
CLIENTS = NODES - 1


def lines_with(path: Path, text: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if text in line]


@pytest.mark.timeout(900)
def test_300_simulated_nodes_meet_at_the_flags_barrier(tmp_path: Path) -> None:
    example = load_example(CLIENTS)
    names = ["snl-server-sim", *(f"raspi-sim-{i:04d}" for i in range(CLIENTS))]
    with (
        LocalCluster([], workdir=tmp_path) as cluster,
        Swarm(cluster.endpoint, cluster.agent_token, names) as swarm,
    ):
        assert cluster.controller is not None
        log = cluster.controller.log_path
        swarm.wait_online(timeout=300)
        client = cluster.client()
        online = {n["name"] for n in client.raw_nodes() if n["state"] == "online"}
        assert online == set(names)
        # Each node enrolled with the join token and now has a credential of its own.
        credentials = {node.credential for node in swarm.nodes.values()}
        assert None not in credentials and len(credentials) == NODES

        nodes = client.get_nodes()
        server = nodes.filter(lambda n: n.name.startswith("snl-server")).take(1)
        clients = nodes.filter(lambda n: n.name.startswith("raspi")).take(CLIENTS)
        experiment = (
            Experiment().map(example.server_pipeline, server).map(example.clients_pipeline, clients)
        )
        client.prepare_experiment(experiment, "swarm-barrier")
        ready = client.wait("swarm-barrier", until="ready", timeout=300)
        assert ready.status is ExperimentStatus.READY, ready
        client.start_execution("swarm-barrier")
        info = client.wait("swarm-barrier", timeout=300)
        assert info.status is ExperimentStatus.FINISHED, info

        assert len(info.execution_result) == NODES
        for report in info.execution_result:
            assert report.result is not None and report.result.is_success, report
        by_node = {r.node.name: r.result.unwrap() for r in info.execution_result}
        server_values = [steps[0].unwrap() for steps in by_node["snl-server-sim"].values()]
        # The server saw every one of the 299 clients arrive, then every one leave.
        assert server_values == [
            0,
            {"text_value": "stage 1", "int_value": CLIENTS},
            0,
            {"text_value": "stage 2", "int_value": 0},
            FlagValues(text_value="stage 2", int_value=0),
        ]
        for name in names[1:]:
            client_values = [steps[0].unwrap() for steps in by_node[name].values()]
            assert client_values[1] == 0 and client_values[3] == 0, (name, client_values)
            assert client_values[2] == {"text_value": "stage 2", "int_value": CLIENTS}
        final = client.get_flag_values("swarm-barrier", "clients_control")
        assert final == FlagValues(text_value="stage 2", int_value=0)

        # Nobody was lost on the way, and everyone is still here.
        assert not lines_with(log, "was lost"), lines_with(log, "was lost")[:5]
        states = {n["name"]: n["state"] for n in client.raw_nodes(include_offline=True)}
        assert states == dict.fromkeys(names, "online")
        assert swarm.stats.refused == 0


@pytest.mark.timeout(180)
def test_a_stalled_controller_does_not_lose_its_nodes(tmp_path: Path) -> None:
    """A controller that cannot listen (here: stopped for longer than the lost
    timeout) does not hold its own deafness against the nodes: none is marked
    suspect or lost when it comes back, and it says in its log that it was
    overloaded."""
    names = [f"stall-{i:02d}" for i in range(20)]
    with (
        LocalCluster(
            [], workdir=tmp_path, heartbeat_interval=0.5, heartbeat_timeout=2, lost_timeout=4
        ) as cluster,
        Swarm(cluster.endpoint, cluster.agent_token, names) as swarm,
    ):
        assert cluster.controller is not None
        log = cluster.controller.log_path
        swarm.wait_online(timeout=60)
        beats = swarm.stats.heartbeats
        cluster.controller.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(6)  # the stall under test: longer than the lost timeout
        finally:
            cluster.controller.proc.send_signal(signal.SIGCONT)
        client = cluster.client()
        wait_until(lambda: lines_with(log, "controller overloaded"), 30, "the stall to be logged")
        # Heartbeats flow again; give the watchdog a few sweeps to judge them.
        wait_until(lambda: swarm.stats.heartbeats > beats + 4 * len(names), 30, "heartbeats")
        states = {n["name"]: n["state"] for n in client.raw_nodes(include_offline=True)}
        assert states == dict.fromkeys(names, "online")
        assert not lines_with(log, "was lost")
        assert not lines_with(log, "suspect: silent")


def store_writes(endpoint: str, token: str) -> float:
    """How many store write transactions the controller committed so far."""
    return metric_value(endpoint, token, "shoal_store_write_seconds_count")


@pytest.mark.timeout(300)
def test_a_burst_of_nodes_is_registered_in_batches_welcomed_only_after_the_commit(
    tmp_path: Path,
) -> None:
    """A fleet that connects at once is written in a few transactions, not one or
    two per node; every node keeps its own properties; and a node's Welcome comes
    only once its row and its credential are committed (looked at in the store
    the moment the Welcome arrives)."""
    names = [f"burst-{i:03d}" for i in range(150)]
    properties = {name: {"rack": f"r{i % 7}", "index": str(i)} for i, name in enumerate(names)}
    at_welcome: dict[str, tuple[dict | None, bool]] = {}
    with LocalCluster([], workdir=tmp_path) as cluster:
        store = cluster.workdir / "shoal.db"

        def look(name: str) -> None:
            with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
                row = db.execute("SELECT properties FROM nodes WHERE name = ?", (name,)).fetchone()
                bound = db.execute(
                    "SELECT 1 FROM node_credentials WHERE name = ?", (name,)
                ).fetchone()
            at_welcome[name] = (json.loads(row[0]) if row else None, bound is not None)

        client = cluster.client()
        token = client.token()
        writes = store_writes(cluster.endpoint, token)
        with Swarm(
            cluster.endpoint, cluster.agent_token, names, properties=properties, on_welcome=look
        ) as swarm:
            swarm.wait_online(timeout=120)
            writes = store_writes(cluster.endpoint, token) - writes
            assert swarm.stats.reconnects == 0
        expected = {name: {"simulated": "true", **properties[name]} for name in names}
        assert at_welcome == {name: (expected[name], True) for name in names}
        stored = {n["name"]: n["properties"] for n in client.raw_nodes(include_offline=True)}
        assert stored == expected
        # One at a time it took two transactions a node (enrollment, node row).
        assert writes <= len(names) / 3, f"{writes:g} store writes for {len(names)} nodes"
