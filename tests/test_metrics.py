"""/metrics: Prometheus' text format from a real controller, moving as work runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, SEED_NODES
from flags_experiment import SERVER_VALUES, run_flags_experiment
from processes import Controller, free_port
from relayed import relayed_grant
from shoal import LocalCluster, RemoteClient
from shoal.channel import Channel
from shoal.graph import Client as GraphClient
from shoal.graph import Output, SessionException, remote
from waiting import wait_until

DASHBOARD = ROOT / "docs" / "grafana-shoal.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(endpoint: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{endpoint}/metrics", headers=headers, timeout=10)


def read(endpoint: str, token: str | None = None) -> Samples:
    """Every sample of a scrape, parsed by Prometheus' own parser."""
    response = scrape(endpoint, token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def token(seed_cluster: LocalCluster) -> str:
    return seed_cluster.client().token()


# --- remote functions of the graph session below ------------------------------------------


@remote(outputs=Output(encode="pickle"))
def square(ctx, i):
    return i * i


@remote(outputs=Output(encode="pickle"))
def add_up(ctx, parts):
    return sum(p.load() for p in parts)


@remote()
def fails(ctx):
    raise ValueError("meant to fail")


def run_graph(cluster: LocalCluster, token: str) -> None:
    """Five tasks that finish, then a session with one that fails."""
    with GraphClient(
        endpoint=cluster.endpoint, login=cluster.login, password=cluster.password
    ) as client:
        with client.new_session(name="metrics graph") as session:
            total = add_up([square(i) for i in range(4)])
            total.output.keep()
            session.submit()
            assert total.output.fetch().load() == 0 + 1 + 4 + 9
            # While the session is open its tasks are counted by state.
            samples = read(cluster.endpoint, token)
            assert value(samples, "shoal_graph_sessions") == 1
            assert value(samples, "shoal_graph_tasks", state="finished") == 5
            for state in ("waiting", "ready", "assigned", "failed"):
                assert value(samples, "shoal_graph_tasks", state=state) == 0, state
        with client.new_session(name="metrics failure") as session:
            fails()
            session.submit()
            with pytest.raises(SessionException):
                session.wait_all()


def echo_through_a_channel(endpoint: str, token: str, payload: bytes) -> None:
    """Echo ``payload`` through a channel to a node's probe.echo, through the relay
    (its grant without the node's direct address)."""
    grant = relayed_grant(endpoint, token, SEED_NODES[0], "probe.echo")
    with Channel.open(grant, endpoint, token) as channel:
        channel.send(payload)
        assert channel.recv(timeout=10) == payload


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_online_nodes_are_the_agents_started(seed_cluster: LocalCluster, token: str) -> None:
    samples = read(seed_cluster.endpoint, token)
    assert value(samples, "shoal_nodes", state="online") == len(SEED_NODES)
    assert value(samples, "shoal_nodes", state="suspect") == 0
    assert value(samples, "shoal_nodes", state="offline") == 0


@pytest.mark.timeout(120)
def test_counters_move_as_work_runs(
    seed_cluster: LocalCluster, client: RemoteClient, token: str
) -> None:
    before = read(seed_cluster.endpoint, token)
    assert run_flags_experiment(client, "metrics-flags") == SERVER_VALUES
    run_graph(seed_cluster, token)
    payload = b"x" * 100_000
    echo_through_a_channel(seed_cluster.endpoint, token, payload)
    lines: list[str] = []
    command = client.commands().run(
        SEED_NODES[0], "echo relayed output", handlers={"stdout": lines.append}
    )
    assert command.done.wait(30) and command.code == 0, command
    assert lines == ["relayed output"]

    def grew(samples: Samples, name: str, by: float = 1, **labels: str) -> bool:
        return value(samples, name, **labels) - value(before, name, **labels) >= by

    def settled() -> Samples | None:
        # Counters are bumped right after the store commits, which a client may
        # see a moment earlier.
        after = read(seed_cluster.endpoint, token)
        done = (
            # 1 server + 3 clients
            grew(after, "shoal_deployments_ended_total", 4, state="finished")
            and grew(after, "shoal_graph_tasks_ended_total", 5, state="finished")
            and grew(after, "shoal_graph_tasks_ended_total", 1, state="failed")
        )
        return after if done else None

    after = wait_until(settled, 30, "the finished work to be counted")
    for op in ("set", "add", "wait"):
        assert grew(after, "shoal_flag_operations_total", operation=op), op
    assert grew(after, "shoal_scheduler_placement_seconds_count", 6)
    assert grew(after, "shoal_store_write_seconds_count", 4)
    assert value(after, "shoal_store_write_seconds_sum") > value(
        before, "shoal_store_write_seconds_sum"
    )
    assert grew(after, "shoal_channel_connections_total", 1)
    assert grew(after, "shoal_channel_messages_total", 2)
    assert grew(after, "shoal_channel_bytes_total", 2 * len(payload))
    assert grew(after, "shoal_command_output_messages_total", 1)
    assert grew(after, "shoal_command_output_bytes_total", len("relayed output\n"))
    # Nothing is left waiting or placed: the closed sessions took their tasks along.
    assert value(after, "shoal_scheduler_queue_length") == 0
    assert value(after, "shoal_graph_sessions") == 0
    assert value(after, "shoal_graph_tasks", state="assigned") == 0
    assert value(after, "shoal_deployments", state="running") == 0
    # A histogram's buckets are cumulative and end with every observation.
    count = value(after, "shoal_store_write_seconds_count")
    assert value(after, "shoal_store_write_seconds_bucket", le="+Inf") == count


@pytest.mark.timeout(60)
def test_a_scrape_needs_a_user_token_by_default(seed_cluster: LocalCluster) -> None:
    for token in (None, "not-a-token"):
        response = scrape(seed_cluster.endpoint, token)
        assert response.status_code == 401, response.text
        assert "token" in response.json()["detail"]


@pytest.mark.timeout(60)
def test_metrics_public_serves_scrapers_without_a_login(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shoal.db'}"
    controller = Controller(db, free_port(), "", tmp_path / "controller.log", "--metrics-public")
    controller.start()
    try:
        samples = read(controller.endpoint)
        assert value(samples, "shoal_nodes", state="online") == 0
        assert ("shoal_store_write_seconds_count", frozenset()) in samples
        # A Prometheus that asks for OpenMetrics gets it.
        response = httpx.get(
            f"{controller.endpoint}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=10,
        )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        names = {f.name for f in openmetrics_families(response.text)}
        assert {"shoal_nodes", "shoal_flag_operations", "shoal_store_write_seconds"} <= names
    finally:
        controller.stop()


def dashboard_queries() -> Iterator[str]:
    """Every PromQL expression of the Grafana dashboard's panels."""
    model = json.loads(DASHBOARD.read_text())
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]


@pytest.mark.timeout(60)
def test_grafana_dashboard_queries_only_metrics_that_exist(
    seed_cluster: LocalCluster, token: str
) -> None:
    model = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in model["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    exposed = {name for name, _labels in read(seed_cluster.endpoint, token)}
    queried = {m for expr in dashboard_queries() for m in re.findall(r"\bshoal_\w+", expr)}
    assert queried, "the dashboard queries nothing"
    assert queried <= exposed, f"not exposed: {sorted(queried - exposed)}"
    # Every metric shoal exposes is on the dashboard.
    families = {re.sub(r"_(total|count|sum|bucket)$", "", m) for m in exposed}
    shown = {re.sub(r"_(total|count|sum|bucket)$", "", m) for m in queried}
    assert families <= shown, f"not on the dashboard: {sorted(families - shown)}"
