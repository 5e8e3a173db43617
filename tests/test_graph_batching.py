"""Short tasks travel in batches (controller -> agent -> worker and back); a batch
never holds a finished task's result back behind a long task."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import LocalCluster
from shoal.graph import Client, remote
from shoal.graph.states import TaskState


@remote(outputs=0)
def nap(ctx: Any, seconds: float) -> None:
    time.sleep(seconds)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    # One node of one cpu: one worker, so the tasks below share its queue.
    with (
        LocalCluster(["solo"], workdir=tmp_path, cpus=1) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as g,
    ):
        yield g


@pytest.mark.timeout(120)
def test_a_result_is_not_held_back_by_a_long_task_behind_it(client: Client) -> None:
    with client.new_session("behind") as session:
        # Short tasks teach the controller to queue ahead on the node ...
        for _ in range(200):
            nap(0)
        session.submit()
        session.wait_all()
        # ... so these two reach the one worker together, the quick one first.
        quick, slow = nap(0), nap(60)
        session.submit()
        started = time.monotonic()
        quick.wait()
        waited = time.monotonic() - started
        assert waited < 20, f"the quick task's result came after {waited:.1f} s"
        slow.update()
        assert slow.state is not TaskState.finished
        # Closing the session cancels the sleeper (SIGUSR1 reaches its sleep).
