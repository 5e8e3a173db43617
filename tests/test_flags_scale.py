"""Flags under load: group commit keeps every increment, and keeps it durable.

32 clients increment one flag at once through the REST API of a real
controller process; the total is exact and every caller saw a distinct count.
A controller killed with SIGKILL in the middle loses no increment it had
acknowledged. Executors' flag calls, relayed by their agent, are believed only
from the node their deployment runs on.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import httpx
import pytest

from pgserver import PostgresServer
from shoal import Experiment, FlagValues, LocalCluster, Pipeline
from shoal.client.remote import RemoteClientException
from shoal.library.flags import WaitForExactFlagResultTask
from shoal.protocol.flag_messages import FlagAnswer, FlagCall
from test_trust_nodes import fake_node, hello
from waiting import wait_until

CLIENTS = 32
PER_CLIENT = 25
FLAG_PATH = "/api/experiments/scale/flags/counter"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A controller without agents, on SQLite or on a throwaway PostgreSQL server."""
    if request.param == "sqlite":
        with LocalCluster([]) as running:
            yield running
        return
    with PostgresServer() as pg, LocalCluster([], db_url=pg.url) as running:
        yield running


def _http(cluster: LocalCluster, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=cluster.endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


@pytest.mark.timeout(180)
def test_32_clients_increment_to_the_exact_total(cluster: LocalCluster) -> None:
    client = cluster.client()
    client.open_run("scale")
    token = client.token()
    total = CLIENTS * PER_CLIENT
    seen: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS + 1)
    woken: list[dict] = []

    def waiter() -> None:
        # Woken by the change that reaches the total, from inside a batch.
        with _http(cluster, token) as http:
            reply = http.post(
                f"{FLAG_PATH}/wait", json={"int_value": total, "timeout": 60}, timeout=90
            )
            woken.append(reply.json())

    def incrementer() -> None:
        with _http(cluster, token) as http:
            start.wait(30)
            for _ in range(PER_CLIENT):
                reply = http.post(f"{FLAG_PATH}/increment")
                with lock:
                    if reply.status_code == 200:
                        seen.append(reply.json()["int_value"])
                    else:
                        errors.append(f"{reply.status_code} {reply.text}")

    threads = [threading.Thread(target=incrementer) for _ in range(CLIENTS)]
    waiting = threading.Thread(target=waiter)
    waiting.start()
    try:
        for thread in threads:
            thread.start()
        start.wait(30)
    finally:
        for thread in [*threads, waiting]:
            thread.join(120)
    assert not errors, errors[:5]
    assert client.get_flag_values("scale", "counter") == FlagValues(None, total)
    # every caller was answered with its own count: no increment lost or merged
    assert sorted(seen) == list(range(1, total + 1))
    assert woken and woken[0]["matched"] and woken[0]["int_value"] == total, woken


@pytest.mark.timeout(180)
def test_a_killed_controller_keeps_every_acknowledged_increment(cluster: LocalCluster) -> None:
    client = cluster.client()
    client.open_run("scale")
    token = client.token()
    counts = {"sent": 0, "acknowledged": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def incrementer() -> None:
        with _http(cluster, token) as http:
            while not stop.is_set():
                with lock:
                    counts["sent"] += 1
                try:
                    reply = http.post(f"{FLAG_PATH}/increment")
                except httpx.TransportError:
                    return  # the controller is gone: this one may or may not have counted
                if reply.status_code != 200:
                    return
                with lock:
                    counts["acknowledged"] += 1

    threads = [threading.Thread(target=incrementer) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: counts["acknowledged"] >= 300, 60, "300 acknowledged increments")
        cluster.stop_controller(signal.SIGKILL)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    cluster.start_controller()
    stored = cluster.client().get_flag_values("scale", "counter").int_value
    assert stored is not None
    assert counts["acknowledged"] <= stored <= counts["sent"], (counts, stored)


@pytest.mark.timeout(120)
def test_a_node_reaches_only_the_flags_of_its_own_deployments() -> None:
    with LocalCluster(["worker"]) as cluster:
        client = cluster.client()
        pipeline = Pipeline().then(
            WaitForExactFlagResultTask("go", FlagValues("go", 1), timeout=60)
        )
        client.prepare_experiment(Experiment().map(pipeline, client.get_nodes()), "victim")
        client.wait("victim", until="ready", timeout=60)
        client.start_execution("victim")
        deployment = client.raw_status("victim")["deployments"][0]["executor_id"]
        # Another node (enrolled with the join token) relays a call as if it came
        # from the worker's executor.
        with fake_node(cluster.endpoint, cluster.agent_token, hello("intruder")) as node:
            node.send(FlagCall(id=1, op="set", flag="go", deployment=deployment, int_value=1))
            answer = node.receive(FlagAnswer)
        assert answer.status == 403, answer
        with pytest.raises(RemoteClientException):
            client.get_flag_values("victim", "go")  # never set
        # The worker's own executor is woken through its agent's connection.
        client.set_flag_values("victim", "go", FlagValues("go", 1))
        info = client.wait("victim", timeout=60)
        assert all(r.result.is_success for r in info.execution_result), info
