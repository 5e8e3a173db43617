"""Failover: SIGKILL the agent running the join; the job moves and the sinks go on."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflow_helpers import SHOAL, copy_network, dataflow, env, rows
from processes import start_agent
from shoal import LocalCluster
from shoal.dataflow import Coordinator, load_network
from waiting import wait_until

JOIN = 4
RELAY_ONLY = ("--no-data-server",)


@pytest.fixture
def v3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LocalCluster, Coordinator]]:
    monkeypatch.setenv("SHOAL_DEMO_PERIOD", "0.05")
    network = load_network(copy_network(tmp_path, "demo_network_v3"))
    names = [node.name for node in network.nodes]
    with LocalCluster(names, heartbeat_interval=0.25, heartbeat_timeout=1.5) as cluster:
        output = network.directory / "simulation"
        coordinator = Coordinator(network, cluster.client(), output, loopback=True, echo=False)
        with coordinator:
            yield cluster, coordinator


def consistent(row: list[str]) -> bool:
    a, b, c, product = (int(v) for v in row)
    return a * b * c == product


@pytest.mark.timeout(120)
def test_killed_join_moves_to_another_node_and_rows_go_on(
    v3: tuple[LocalCluster, Coordinator], tmp_path: Path
) -> None:
    cluster, coordinator = v3
    join_csv = tmp_path / "demo_network_v3" / "simulation" / "6" / "join.csv"
    wait_until(lambda: len(rows(join_csv)) > 5, 30, "join rows before the kill")
    victim = coordinator.placements()[JOIN]
    cluster.kill_agent(victim)
    killed_at = time.monotonic()
    before = len(rows(join_csv))
    moved = coordinator.wait_for(
        lambda c: c.states[JOIN].restarts and c.states[JOIN].ready, timeout=30
    )
    assert moved, f"job {JOIN} not restarted: {coordinator.states[JOIN]}"
    assert coordinator.placements()[JOIN] not in (victim, "-")
    wait_until(lambda: len(rows(join_csv)) > before + 10, 30, "join rows after the failover")
    took = time.monotonic() - killed_at
    table = rows(join_csv)[1:]
    assert all(consistent(row) for row in table), table
    # The restart is logged and shown, with the node it left.
    assert victim in coordinator.states[JOIN].restarts[0]
    state = (tmp_path / "demo_network_v3" / "simulation" / "state.json").read_text()
    assert victim in state
    assert took < 30
    # Jobs that lived on the killed node moved too; every job runs somewhere alive.
    alive = set(cluster.agents) | {"client"}
    assert set(coordinator.placements().values()) <= alive


@pytest.mark.timeout(120)
def test_show_and_graphviz_print_graph_placement_and_restarts(
    v3: tuple[LocalCluster, Coordinator], tmp_path: Path
) -> None:
    cluster, coordinator = v3
    network = tmp_path / "demo_network_v3"
    victim = coordinator.placements()[JOIN]
    moving = [job for job, node in coordinator.placements().items() if node == victim]
    cluster.kill_agent(victim)
    # Every job the killed node ran moves (one after another), not only the join.
    assert coordinator.wait_for(
        lambda c: all(c.states[job].restarts and c.states[job].ready for job in moving), 30
    ), {job: coordinator.states[job] for job in moving}
    # show reads the state the running network keeps in its output folder.
    done = dataflow(str(network), "show")
    assert done.returncode == 0, done.stderr
    assert "job 4 (JoinJob) on" in done.stdout
    assert "-> ReducePipe(105) to job 5 (ReduceJob)" in done.stdout
    assert "job 4 (JoinJob) restarted: " in done.stdout and victim in done.stdout
    assert "job 6 (CSVSinkJob) on client" in done.stdout
    # graphviz draws the same jobs, grouped by the nodes they run on now.
    done = dataflow(str(network), "graphviz", "--format", "svg")
    assert done.returncode == 0, done.stderr
    dot = (network / "network.dot").read_text()
    placements = coordinator.placements()
    for node in set(placements.values()):
        cluster_of_node = dot[dot.index(f'label="{node}"') :].split("}")[0]
        for job_id, where in placements.items():
            label = f'"{job_id} ('
            assert (label in cluster_of_node) == (where == node), (node, job_id, dot)
    assert '"4 (JoinJob)" -> "5 (ReduceJob)" [label="ReducePipe(105)"' in dot
    assert "ReducePipe(105)" in (network / "network.svg").read_text()


def run_with_unreachable_pipes(tmp_path: Path, direct: bool) -> Path:
    """Run demo v3 for 10 rounds on agents that serve no channels of their own
    (``--no-data-server``: no peer can reach them), so every pipe goes through
    the controller; ``direct=False`` also keeps the hosts from reaching the
    coordinator directly."""
    network = load_network(copy_network(tmp_path, "demo_network_v3"))
    logs = tmp_path / "agents"
    logs.mkdir()
    with LocalCluster([]) as cluster:
        for node in network.nodes:
            log = logs / f"{node.name}.log"
            agent = start_agent(cluster.endpoint, cluster.agent_token, node.name, log, *RELAY_ONLY)
            cluster.agents[node.name] = agent  # stopped with the cluster
        cluster.client().wait_for_nodes([node.name for node in network.nodes], 30)
        output = network.directory / "simulation"
        run = Coordinator(
            network,
            cluster.client(),
            output,
            loopback=True,
            echo=False,
            max_rounds=10,
            direct=direct,
        )
        with run:
            assert run.wait(60), "the network did not finish without direct connections"
    return output


@pytest.mark.timeout(90)
def test_pipes_to_unreachable_receivers_go_through_the_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_DEMO_PERIOD", "0.01")
    output = run_with_unreachable_pipes(tmp_path, direct=True)
    join = rows(output / "6" / "join.csv")[1:]
    assert join == [[str(n)] * 3 + [str(n**3)] for n in range(1, 11)]


@pytest.mark.timeout(90)
def test_everything_goes_through_the_controller_when_nothing_else_is_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client behind NAT and nodes nobody can reach: the jobs reach the
    coordinator, and each other's pipes, only through the controller."""
    monkeypatch.setenv("SHOAL_DEMO_PERIOD", "0.01")
    output = run_with_unreachable_pipes(tmp_path, direct=False)
    join = rows(output / "6" / "join.csv")[1:]
    assert join == [[str(n)] * 3 + [str(n**3)] for n in range(1, 11)]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("nodes", ["relay-only", "direct"])
def test_via_controller_run_survives_a_controller_restart(tmp_path: Path, nodes: str) -> None:
    """Nobody reaches the coordinator; the coordinator opens each host's control
    link as a channel. With ``--no-data-server`` nodes those channels go through
    the controller: a restart takes them with it, and the jobs are placed again.
    With nodes that serve channels themselves, the links and pipes go direct: a
    pipe that cannot get a grant while the controller is down holds its values
    until it can, so not one is lost."""
    network = copy_network(tmp_path, "demo_network_v3")
    names = [node.name for node in load_network(network).nodes]
    logs = tmp_path / "agents"
    logs.mkdir()
    extra = RELAY_ONLY if nodes == "relay-only" else ()
    with LocalCluster(
        [], workdir=tmp_path / "cluster", heartbeat_interval=0.25, heartbeat_timeout=1.5
    ) as cluster:
        for name in names:
            agent = start_agent(
                cluster.endpoint, cluster.agent_token, name, logs / f"{name}.log", *extra
            )
            cluster.agents[name] = agent  # stopped with the cluster
        cluster.client().wait_for_nodes(names, 30)
        run = subprocess.Popen(
            [*SHOAL, "dataflow", str(network), "run", "--via-controller", "--rounds", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(
                0.1,
                SHOAL_ENDPOINT=cluster.endpoint,
                SHOAL_LOGIN=cluster.login,
                SHOAL_PASSWORD=cluster.password,
            ),
        )
        try:
            join_csv = network / "local" / "6" / "join.csv"
            wait_until(lambda: len(rows(join_csv)) > 3, 90, "join rows before the restart")
            before = len(rows(join_csv))
            cluster.stop_controller(signal.SIGKILL)
            cluster.start_controller()
            try:
                out, err = run.communicate(timeout=150)
            except subprocess.TimeoutExpired:
                run.kill()
                out, err = run.communicate()
                pytest.fail(f"the run did not end after the restart:\n{err[-6000:]}")
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 0, f"{out}\n{err}"
        assert "network finished" in err
        assert len(rows(join_csv)) > before  # rows kept coming after the restart
        if nodes == "direct":
            # No job moved: every round of the sources is joined, and every block
            # of five joined values reduced (header + 60 rows, header + 12).
            assert len(rows(join_csv)) == 61, err
            assert len(rows(network / "local" / "7" / "reduce.csv")) == 13, err
