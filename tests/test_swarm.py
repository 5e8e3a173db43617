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

import signal
import time
from pathlib import Path

import pytest

from flags_experiment import load_example
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
