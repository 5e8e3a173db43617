"""The store before the word: a database outage or a full disk loses nothing finished.

While the store is away the API answers 503 with a message and changes
nothing; the agent's report of a finished deployment waits (the agent keeps it
until the controller has stored it) and is stored when the store is back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy.exc
import websockets
import websockets.sync.client

from pgserver import PostgresServer
from shoal import Experiment, ExperimentStatus, LocalCluster, Pipeline, Success
from shoal.client.remote import RemoteClientException
from shoal.controller.batch import WriteBatch
from shoal.controller.experiments import LiveDeployment, LiveExperiment
from shoal.library.basic import SleepTask
from shoal.store.faults import StoreFull, StoreUnavailable, classify
from test_recovery import ReadFifo, WriteFifo, read_fifo
from waiting import wait_until

OUTAGE = 8.0  # seconds the database stays down


def fifo_pipeline(go: Path, done: Path, text: str) -> Pipeline:
    """Waits for the test to say go, then tells the test it is done and finishes."""
    return (
        Pipeline()
        .then(ReadFifo(str(go), name="wait-for-go"))
        .then(WriteFifo(str(done), text, name="finish"))
    )


def make_fifos(tmp_path: Path) -> tuple[Path, Path]:
    go, done = tmp_path / "go", tmp_path / "done"
    os.mkfifo(go)
    os.mkfifo(done)
    return go, done


def finish_pipeline_now(go: Path, done: Path) -> str:
    """Let the pipeline run to its end; what its last step wrote."""
    with open(go, "w") as fifo:  # blocks until the step has opened its end
        fifo.write("go")
    return read_fifo(done, timeout=30)


def login(http: httpx.Client, password: str) -> httpx.Response:
    return http.post("/api/token", json={"login": "shoal", "password": password})


def bearer(http: httpx.Client, password: str) -> dict[str, str]:
    reply = login(http, password)
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def assert_store_fault(reply: httpx.Response, message: str) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["detail"].startswith(message), reply.text
    assert "Traceback" not in reply.text


def controller_log(cluster: LocalCluster) -> str:
    return (cluster.workdir / "logs" / "controller.log").read_text(errors="replace")


def step_texts(info) -> dict:  # type: ignore[no-untyped-def]
    return info.execution_result[0].result.unwrap()


@pytest.mark.postgres
@pytest.mark.timeout(150)
def test_postgres_outage_across_a_deployments_finish(tmp_path: Path) -> None:
    go, done = make_fifos(tmp_path)
    pipeline = fifo_pipeline(go, done, "finished during the outage")
    with (
        # durable: the fast settings let an immediate stop drop the last commits
        # (the experiment itself, in one CI run), which no controller can keep
        PostgresServer(durable=True) as pg,
        LocalCluster(["a"], workdir=tmp_path / "cluster", db_url=pg.url) as cluster,
        httpx.Client(base_url=cluster.endpoint, timeout=30) as http,
    ):
        client = cluster.client()
        client.prepare_experiment(Experiment().map(pipeline, client.get_nodes()), "outage")
        client.wait("outage", until="ready")
        client.start_execution("outage")
        auth = bearer(http, cluster.password)
        unused = bearer(http, cluster.password)  # not seen by the controller's token cache yet

        stopped = time.monotonic()
        pg.stop()
        assert finish_pipeline_now(go, done) == "finished during the outage"
        # The agent reported the finish; the controller could not store it and keeps trying.
        wait_until(
            lambda: (
                "storage unavailable" in controller_log(cluster)
                and "while storing what agents report" in controller_log(cluster)
            ),
            30,
            "the controller to fail storing the agent's report",
        )

        def api_answers_503() -> None:
            unavailable = "controller storage unavailable: "
            assert_store_fault(login(http, cluster.password), unavailable)
            # a flag increment whose token must be looked up in the store
            increment = "/api/experiments/outage/flags/n/increment"
            assert_store_fault(http.post(increment, headers=unused), unavailable)
            assert_store_fault(http.get("/api/experiments/outage", headers=auth), unavailable)
            # a cancel that cannot be stored is refused, and changes nothing
            assert_store_fault(
                http.post("/api/experiments/outage/cancel", headers=auth), unavailable
            )

        # a WebSocket that needs the store is closed with "try again later" and the reason
        url = cluster.endpoint.replace("http", "ws", 1) + "/api/graph/ws"
        with (
            websockets.sync.client.connect(url, additional_headers=unused) as ws,
            pytest.raises(websockets.ConnectionClosed) as closed,
        ):
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert closed.value.rcvd.reason.startswith("controller storage unavailable: ")

        # The outage lasts OUTAGE seconds; the API is checked all along.
        while time.monotonic() - stopped < OUTAGE:
            api_answers_503()
            time.sleep(0.5)
        pg.start()

        info = client.wait("outage", timeout=60)
        assert info.status is ExperimentStatus.FINISHED, info
        assert info.execution_result[0].state == "finished"
        assert step_texts(info) == {
            "wait-for-go": [Success("go")],
            "finish": [Success("finished during the outage")],
        }
        log = controller_log(cluster)
        assert "controller storage is back" in log
        assert "Traceback" not in log, log


def fill(path: Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (the tests run as root), unmounted afterwards."""
    mount_point = tmp_path / "store"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


@pytest.mark.timeout(150)
def test_full_store_disk_mid_run(tmp_path: Path, small_disk: Path) -> None:
    go, done = make_fifos(tmp_path)
    filler = small_disk / "filler"
    db_url = f"sqlite+aiosqlite:///{small_disk / 'shoal.db'}"
    with (
        LocalCluster(["a"], workdir=tmp_path / "cluster", db_url=db_url) as cluster,
        httpx.Client(base_url=cluster.endpoint, timeout=30) as http,
    ):
        client = cluster.client()
        nodes = client.get_nodes()
        client.prepare_experiment(
            Experiment().map(fifo_pipeline(go, done, "finished on a full disk"), nodes), "full"
        )
        client.prepare_experiment(Experiment().map(Pipeline().then(SleepTask(1)), nodes), "idle")
        client.wait("full", until="ready")
        client.wait("idle", until="ready")
        client.start_execution("full")
        auth = bearer(http, cluster.password)

        fill(filler)
        full = "controller storage full"
        assert_store_fault(login(http, cluster.password), full)
        with pytest.raises(RemoteClientException, match=f"^503: {full}$") as refused:
            client.prepare_experiment(Experiment().map(Pipeline().then(SleepTask(1)), nodes), "new")
        assert refused.value.status_code == 503
        assert_store_fault(http.post("/api/experiments/idle/cancel", headers=auth), full)
        # reads still work, and show that nothing changed
        assert client.raw_status("idle")["status"] == "READY"
        # a node that joins now is online only once the store has it
        cluster.start_agent("b")
        wait_until(
            lambda: f"{full} while enrolling nodes" in controller_log(cluster),
            30,
            "the controller to fail storing the new node",
        )
        assert "b" not in client.get_nodes().names()

        assert finish_pipeline_now(go, done) == "finished on a full disk"
        wait_until(
            lambda: (
                "controller storage full while storing what agents report"
                in controller_log(cluster)
            ),
            30,
            "the controller to fail storing the agent's report",
        )
        assert client.raw_status("full")["status"] == "RUNNING"

        filler.unlink()
        client.wait_for_nodes(["a", "b"], timeout=30)
        info = client.wait("full", timeout=60)
        assert info.status is ExperimentStatus.FINISHED, info
        assert step_texts(info)["finish"] == [Success("finished on a full disk")]
        client.cancel_experiment("idle")
        assert client.raw_status("idle")["status"] == "CANCELLED"

        cluster.stop_controller()
        cluster.start_controller()
        client = cluster.client()
        kept = client.get_experiment_status("full")
        assert kept.status is ExperimentStatus.FINISHED
        assert step_texts(kept) == {
            "wait-for-go": [Success("go")],
            "finish": [Success("finished on a full disk")],
        }
        assert "Traceback" not in controller_log(cluster)


# ------------------------------------------------------------- unit tests: one piece each


def _sqlite_error(code: int, text: str) -> sqlalchemy.exc.OperationalError:
    orig = sqlite3.OperationalError(text)
    orig.sqlite_errorcode = code  # type: ignore[attr-defined]
    return sqlalchemy.exc.OperationalError("INSERT INTO tokens VALUES (?)", ("s3cret",), orig)


def test_store_faults_are_told_apart_from_bugs() -> None:
    full = classify(_sqlite_error(13, "database or disk is full"))
    assert isinstance(full, StoreFull) and full.message == "controller storage full"
    busy = classify(_sqlite_error(5, "database is locked"))
    assert isinstance(busy, StoreUnavailable)
    assert busy.message == "controller storage unavailable: database is locked"
    assert classify(_sqlite_error(1, "no such table: tokens")) is None  # a bug, not an outage

    refused = classify(ConnectionRefusedError(111, "Connect call failed"))
    assert isinstance(refused, StoreUnavailable)
    assert isinstance(classify(OSError(errno.ENOSPC, "No space left on device")), StoreFull)
    assert isinstance(classify(asyncpg.exceptions.DiskFullError("could not extend")), StoreFull)
    assert isinstance(
        classify(asyncpg.exceptions.CannotConnectNowError("the database system is starting up")),
        StoreUnavailable,
    )
    assert classify(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
    integrity = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("UNIQUE failed"))
    assert classify(integrity) is None
    # what a user reads never carries the statement or its parameters
    for fault in (full, busy):
        assert "INSERT" not in fault.message and "s3cret" not in fault.message


def test_a_batch_the_store_refused_leaves_memory_as_it_was() -> None:
    dep = LiveDeployment("d", "e", "node", "running", True)
    live = LiveExperiment("e", 1, "exp", "RUNNING", {"d": dep})
    batch = WriteBatch()
    batch.set(dep, state="finished")
    batch.set(live, status="FINISHED")
    batch.set(dep, state="lost")
    batch.send("node", object())
    batch.forget.append(("node", "d"))
    batch.rollback()
    assert (dep.state, dep.prepared, live.status) == ("running", True, "RUNNING")
    assert not batch.messages and not batch.forget
