"""A graph session's record is written behind the scheduler, in batches; once
written, a finished session's record keeps every task in its final state across
a controller crash."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from shoal import LocalCluster
from shoal.graph import Client, remote
from waiting import wait_until

TASKS = 300


@remote(outputs=0)
def noop(ctx: Any, i: int) -> None:
    return None


@remote()
def square(ctx: Any, i: int) -> bytes:
    return b"%d" % (i * i)


def tasks_by_state(record: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in record["tasks"]:
        counts[task["state"]] = counts.get(task["state"], 0) + 1
    return counts


@pytest.mark.timeout(180)
def test_a_finished_graph_lists_every_task_after_a_controller_crash(tmp_path: Path) -> None:
    with LocalCluster(["node-0", "node-1"], workdir=tmp_path, cpus=1) as cluster:
        with Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as g:
            with g.new_session("many no-ops") as session:
                for i in range(TASKS):
                    noop(i)
                last = square(7)
                last.output.keep()
                session.submit()
                session.wait_all()
                assert last.output.fetch().get_bytes() == b"49"
            name = g.transport.records[session.session_id]
        client = cluster.client()
        wait_until(
            lambda: client.raw_status(name)["state"] == "FINISHED",
            30,
            "the session's record settled as finished",
        )
        written = client.raw_status(name)
        assert tasks_by_state(written) == {"finished": TASKS + 1}, tasks_by_state(written)

        cluster.stop_controller(signal.SIGKILL)  # nothing is closed on the way
        cluster.start_controller()
        after = cluster.client().raw_status(name)
    assert after["state"] == "FINISHED"
    assert tasks_by_state(after) == {"finished": TASKS + 1}
    assert sorted(t["id"] for t in after["tasks"]) == sorted(t["id"] for t in written["tasks"])
    [made] = [t for t in after["tasks"] if t["name"] == "square"]
    assert made["node"] in ("node-0", "node-1")
    assert made["info"]["cpus"] == 1 and made["info"]["duration"] >= 0
