"""A store changed behind the controller's back (restored from an older backup, or
failed over to a replica that was behind) lost an experiment the controller still
runs: what agents report about it can never be stored. It must not hold up what
they report about anything else, nor keep its agent away."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from pgserver import PostgresServer
from shoal import Experiment, ExperimentStatus, LocalCluster, Pipeline, Success
from shoal.client.remote import RemoteClientException
from shoal.library.basic import SleepTask
from test_store_faults import controller_log, fifo_pipeline, finish_pipeline_now, make_fifos
from waiting import wait_until


def forget_behind_the_controllers_back(store: Path | PostgresServer, experiment: str) -> None:
    """Delete ``experiment`` from the store (its deployments, steps and logs go with it)."""
    if isinstance(store, PostgresServer):

        async def delete() -> str:
            conn = await asyncpg.connect(store.dsn)
            try:
                return await conn.execute("DELETE FROM experiments WHERE name = $1", experiment)
            finally:
                await conn.close()

        assert asyncio.run(delete()) == "DELETE 1"
        return
    with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
        db.execute("PRAGMA foreign_keys=ON")
        deleted = db.execute("DELETE FROM experiments WHERE name = ?", (experiment,)).rowcount
        db.commit()
    assert deleted == 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | PostgresServer]:
    """The controller's store: SQLite in the cluster's directory, or a PostgreSQL server."""
    if request.param == "sqlite":
        yield tmp_path / "cluster" / "shoal.db"
        return
    with PostgresServer() as pg:
        yield pg


def cluster_on(store: Path | PostgresServer, nodes: list[str], workdir: Path) -> LocalCluster:
    db_url = store.url if isinstance(store, PostgresServer) else None
    return LocalCluster(nodes, workdir=workdir, db_url=db_url)


@pytest.mark.timeout(120)
def test_reports_about_a_lost_experiment_hold_up_nothing_else(
    tmp_path: Path, store: Path | PostgresServer
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    go_a, done_a = make_fifos(tmp_path / "a")
    go_b, done_b = make_fifos(tmp_path / "b")
    with cluster_on(store, ["a", "b"], tmp_path / "cluster") as cluster:
        client = cluster.client()
        nodes = client.get_nodes()
        on_a = nodes.filter(lambda n: n.name == "a")
        on_b = nodes.filter(lambda n: n.name == "b")
        client.prepare_experiment(
            Experiment().map(fifo_pipeline(go_a, done_a, "nowhere to go"), on_a), "rewound"
        )
        client.prepare_experiment(
            Experiment().map(fifo_pipeline(go_b, done_b, "kept"), on_b), "kept"
        )
        for name in ("rewound", "kept"):
            client.wait(name, until="ready", timeout=30)
            client.start_execution(name)

        forget_behind_the_controllers_back(store, "rewound")
        assert finish_pipeline_now(go_a, done_a) == "nowhere to go"
        assert finish_pipeline_now(go_b, done_b) == "kept"

        info = client.wait("kept", timeout=60)
        assert info.status is ExperimentStatus.FINISHED, info
        assert info.execution_result[0].result.unwrap() == {
            "wait-for-go": [Success("go")],
            "finish": [Success("kept")],
        }
        wait_until(
            lambda: "is no longer in the store" in controller_log(cluster),
            30,
            "the controller to say what it dropped",
        )
        log = controller_log(cluster)
        assert "Traceback" not in log, log
        with pytest.raises(RemoteClientException, match="experiment 'rewound' not found"):
            client.get_experiment_status("rewound")

        # Node a was not sent away for good: it runs the next experiment.
        client.prepare_experiment(Experiment().map(Pipeline().then(SleepTask(0)), on_a), "next")
        client.wait("next", until="ready", timeout=30)
        client.start_execution("next")
        assert client.wait("next", timeout=30).status is ExperimentStatus.FINISHED


def agent_connections(pid: int, port: int) -> list[str]:
    """The local ports of the TCP connections process ``pid`` has to ``port``."""
    listed = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return [
        line.split()[2].rsplit(":", 1)[1] for line in listed.splitlines() if f"pid={pid}," in line
    ]


def cut(local_port: str, port: int) -> None:
    """Abort one TCP connection, as a network that drops it would (RST to the peer)."""
    subprocess.run(
        ["ss", "-K", "-tn", f"( sport = :{local_port} and dport = :{port} )"],
        capture_output=True,
        check=True,
        timeout=10,
    )


@pytest.mark.timeout(120)
def test_an_agent_reconnecting_with_reports_about_a_lost_experiment_is_taken(
    tmp_path: Path,
) -> None:
    go, done = make_fifos(tmp_path)
    with LocalCluster(["a"], workdir=tmp_path / "cluster") as cluster:
        client = cluster.client()
        nodes = client.get_nodes()
        client.prepare_experiment(
            Experiment().map(fifo_pipeline(go, done, "nowhere to go"), nodes), "rewound"
        )
        client.wait("rewound", until="ready", timeout=30)
        client.start_execution("rewound")
        forget_behind_the_controllers_back(cluster.workdir / "shoal.db", "rewound")

        # The pipeline ends while its agent cannot report it: the agent keeps the
        # result and brings it in the Hello of its next connection.
        agent = cluster.agents["a"]
        ports = agent_connections(agent.pid, cluster.port)
        assert ports, "the agent has no connection to the controller"
        os.kill(agent.pid, signal.SIGSTOP)
        try:
            assert finish_pipeline_now(go, done) == "nowhere to go"
            for port in ports:
                cut(port, cluster.port)
        finally:
            os.kill(agent.pid, signal.SIGCONT)

        wait_until(
            lambda: "is no longer in the store" in controller_log(cluster),
            30,
            "the controller to say what it dropped",
        )
        client.wait_for_nodes(["a"], timeout=30)
        client.prepare_experiment(Experiment().map(Pipeline().then(SleepTask(0)), nodes), "next")
        client.wait("next", until="ready", timeout=30)
        client.start_execution("next")
        assert client.wait("next", timeout=30).status is ExperimentStatus.FINISHED
        log = controller_log(cluster)
        assert "Traceback" not in log, log
