"""Many nodes at once: atomic flags, and waits woken by the change."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from flags_experiment import run_flags_experiment
from shoal import Experiment, FlagValues, LocalCluster, Pipeline
from shoal.library.flags import AtomicIncrementFlagTask, GetFlagTask

CLIENTS = 20


@pytest.fixture(scope="module")
def big_cluster() -> Iterator[LocalCluster]:
    names = ["snl-server-5", *(f"raspi-{i:02d}" for i in range(CLIENTS))]
    with LocalCluster(names) as cluster:
        yield cluster


@pytest.mark.timeout(120)
def test_twenty_nodes_increment_one_flag(big_cluster: LocalCluster) -> None:
    client = big_cluster.client()
    raspis = client.get_nodes().filter(lambda n: n.name.startswith("raspi"))
    assert len(raspis) == CLIENTS
    pipeline = Pipeline().then(AtomicIncrementFlagTask("counter")).then(GetFlagTask("counter"))
    client.prepare_experiment(Experiment().map(pipeline, raspis), "increments")
    client.wait("increments", until="ready", timeout=60)
    client.start_execution("increments")
    info = client.wait("increments", timeout=60)
    assert all(r.result.is_success for r in info.execution_result), info
    assert client.get_flag_values("increments", "counter") == FlagValues(None, CLIENTS)
    # every node saw a distinct count: increments were never lost or merged
    seen = sorted(
        list(r.result.unwrap().values())[1][0].unwrap().int_value for r in info.execution_result
    )
    assert seen[-1] == CLIENTS and len(seen) == CLIENTS


@pytest.mark.timeout(120)
def test_flags_barrier_with_twenty_clients(big_cluster: LocalCluster) -> None:
    client = big_cluster.client()
    values = run_flags_experiment(client, "barrier-20", clients_count=CLIENTS)
    assert values[1] == {"text_value": "stage 1", "int_value": CLIENTS}
    assert values[3] == {"text_value": "stage 2", "int_value": 0}


@pytest.mark.timeout(60)
def test_a_waiter_is_woken_by_the_change(big_cluster: LocalCluster) -> None:
    client = big_cluster.client()
    raspi = client.get_nodes().filter(lambda n: n.name == "raspi-00")
    pipeline = Pipeline().then(GetFlagTask("unused"))
    client.prepare_experiment(Experiment().map(pipeline, raspi), "wake")
    client.set_flag_values("wake", "go", FlagValues("no", 0))
    woken: list[float] = []
    waiting = threading.Event()

    def waiter() -> None:
        with big_cluster.client() as other:
            other.healthcheck()
            waiting.set()
            # the server holds this request for up to 50 s: only the change can end it early
            other.wait_flag("wake", "go", FlagValues("yes", 1), timeout=50)
            woken.append(time.perf_counter())

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(10)
    # give the request time to reach the server before the change (a long-poll race
    # would only make this test pass more easily, not fail it)
    client.get_flag_values("wake", "go")
    changed = time.perf_counter()
    client.set_flag_values("wake", "go", FlagValues("yes", 1))
    thread.join(30)
    assert woken, "the waiter was not woken"
    latency = woken[0] - changed
    # far below any polling period (netUnicorn polls once a second)
    assert latency < 0.5, f"woken after {latency * 1000:.0f} ms"
    client.cancel_experiment("wake")
