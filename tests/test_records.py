"""One record of all work: every front-end's runs are experiments with a kind,
truthful states, reproduction info, a table export, and they outlive the controller."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas
import pytest
from sqlalchemy import inspect, text

from dataflow_helpers import copy_network
from runner_helpers import env_for, run_inline
from shoal import Experiment, LocalCluster, Pipeline
from shoal.dataflow import Coordinator, load_network
from shoal.graph import Client, TaskException, blob, tasks
from shoal.library.basic import ShellCommand
from shoal.runner import Server, ServerList
from shoal.store.database import Database
from waiting import wait_until

# The demo network's node names, so the dataflow network runs on this cluster too.
NODES = ["192.168.4.2", "192.168.4.3", "192.168.4.4"]
SHOAL = [sys.executable, "-m", "shoal"]


def cli(cluster: LocalCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The shoal CLI as a user runs it, its output piped (not a terminal)."""
    done = subprocess.run(
        [*SHOAL, *args], capture_output=True, text=True, timeout=60, env=env_for(cluster)
    )
    if check:
        assert done.returncode == 0, f"shoal {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def listing(cluster: LocalCluster) -> dict[str, dict[str, str]]:
    """`shoal experiments`, piped: tab-separated, one experiment a line."""
    header, *lines = cli(cluster, "experiments").stdout.splitlines()
    table = [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]
    return {row["name"]: row for row in table}


def record_state(cluster: LocalCluster, name: str) -> str:
    return cluster.client().raw_status(name)["state"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SHOAL_DEMO_PERIOD", "0.02")  # the demo network's sources, on the agents
        with LocalCluster(NODES, workdir=tmp_path_factory.mktemp("records")) as c:
            yield c


@pytest.fixture(scope="module")
def work(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One run of each kind, two of them failing; kind -> record name."""
    names: dict[str, str] = {}
    client = cluster.client()
    nodes = client.get_nodes()

    # pipelines: the second step exits 2, so the pipeline stops there
    failing = Pipeline().then(ShellCommand("echo fine")).then(ShellCommand("exit 2"))
    client.prepare_experiment(Experiment().map(failing, nodes.take(1)), "pipe-fails")
    client.wait("pipe-fails", until="ready")
    client.start_execution("pipe-fails")
    client.wait("pipe-fails", timeout=60)
    names["pipelines"] = "pipe-fails"

    # runner: a run of two commands
    servers = ServerList(Server(NODES[0], "127.0.0.1", 20000), Server(NODES[1], "127.0.0.1", 20001))

    def two_commands(servers: ServerList) -> None:
        for server in servers:
            assert server.run_cmd("echo hello from the runner").wait() == 0

    [outcome] = run_inline(cluster, servers, two_commands)
    assert outcome.status == "finished", outcome.error
    runs = [n for n, e in client._call("GET", "/api/experiments").items() if e["kind"] == "runner"]
    names["runner"] = runs[0]

    # graph: a session that finishes and one whose task fails
    with Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as g:
        with g.new_session("graph-ok") as session:
            joined = tasks.Concat([blob(b"a"), blob(b"b")], name="join")
            joined.output.keep()
            session.submit()
            assert joined.output.fetch().get_bytes() == b"ab"
        names["graph"] = g.transport.records[session.session_id]
        with pytest.raises(TaskException), g.new_session("graph-fails") as bad:
            tasks.Execute("echo broken >&2; exit 3", shell=True, name="breaks")
            bad.submit()
            bad.wait_all()
        names["graph-fails"] = g.transport.records[bad.session_id]

    # dataflow: the tutorial's first network, five rounds, then it ends by itself
    folder = copy_network(tmp_path_factory.mktemp("dataflow"), "demo_network_v1")
    network = load_network(folder)
    output = folder / "simulation"
    with Coordinator(
        network, cluster.client(), output, max_rounds=5, loopback=True, echo=False
    ) as c:
        assert c.wait(60), "the network did not end"
    assert c.record.name is not None
    names["dataflow"] = c.record.name

    for name in names.values():
        wait_until(
            lambda n=name: record_state(cluster, n) not in ("RUNNING", "PREPARING"),
            15,
            f"{name} to settle in the store",
        )
    return names


@pytest.mark.timeout(300)
def test_experiments_lists_all_four_kinds_with_truthful_states(
    cluster: LocalCluster, work: dict[str, str]
) -> None:
    rows = listing(cluster)
    kinds = {rows[name]["kind"] for name in work.values()}
    assert kinds == {"pipelines", "runner", "graph", "dataflow"}, rows
    # a pipeline whose step exited 2 ran to its end, but did not succeed
    assert rows["pipe-fails"]["state"] == "FAILED" and rows["pipe-fails"]["failed"] == "1"
    assert rows["pipe-fails"]["work"].startswith("2 steps")
    assert rows[work["graph-fails"]]["state"] == "FAILED"
    assert rows[work["graph-fails"]]["failed"] == "1"
    assert rows[work["graph"]]["state"] == "FINISHED" and rows[work["graph"]]["failed"] == "0"
    assert rows[work["runner"]]["state"] == "FINISHED"
    assert rows[work["runner"]]["work"] == "2 commands"
    assert rows[work["dataflow"]]["state"] == "FINISHED", rows[work["dataflow"]]
    # the API says the same, and keeps netUnicorn's lifecycle status beside it
    raw = cluster.client().raw_status("pipe-fails")
    assert raw["status"] == "FINISHED" and raw["state"] == "FAILED"
    assert raw["counts"] == {"failed": 1, "finished": 1, "total": 2}
    assert raw["state_reason"] == "1 of 2 steps failed"
    # names are never cut when piped, however long
    long_name = "a-pipeline-with-a-name-much-longer-than-any-terminal-would-show-" + "x" * 80
    client = cluster.client()
    ok = Pipeline().then(ShellCommand("true"))
    client.prepare_experiment(Experiment().map(ok, client.get_nodes().take(1)), long_name)
    assert long_name in listing(cluster)
    client.cancel_experiment(long_name)
    wait_until(lambda: record_state(cluster, long_name) == "CANCELLED", 30, "the cancel")
    assert listing(cluster)[long_name]["state"] == "CANCELLED"


@pytest.mark.timeout(120)
def test_graph_and_dataflow_records_hold_their_units_of_work(
    cluster: LocalCluster, work: dict[str, str]
) -> None:
    client = cluster.client()
    graph = client.raw_status(work["graph-fails"])
    [task] = graph["tasks"]
    assert (task["name"], task["type"], task["state"]) == ("breaks", "execute", "failed")
    assert task["node"] in NODES and "exited with code 3" in task["error"]
    assert task["started_at"] <= task["finished_at"]
    ok = client.raw_status(work["graph"])
    [join] = ok["tasks"]
    assert join["state"] == "finished" and join["info"]["outputs"]
    objects = {o["id"]: o for o in ok["objects"]}
    made = objects[join["info"]["outputs"][0]]
    assert made["info"]["producer"] == join["id"] and made["info"]["size"] == 2
    assert made["info"]["placement"]  # where it was
    flow = client.raw_status(work["dataflow"])
    assert len(flow["jobs"]) == len(flow["reproduction"]["parameters"]["jobs"]) >= 3
    assert all(j["state"] == "finished" for j in flow["jobs"]), flow["jobs"]
    assert all(j["node"] in [*NODES, "client"] for j in flow["jobs"])
    assert sum(j["info"]["rounds"] for j in flow["jobs"]) > 0
    # shoal status names tasks by type and node
    out = cli(cluster, "status", work["graph-fails"]).stdout
    assert "breaks" in out and "execute" in out and task["node"] in out


@pytest.mark.timeout(120)
def test_export_of_each_kind_is_a_table_pandas_reads(
    cluster: LocalCluster, work: dict[str, str], tmp_path: Path
) -> None:
    expected_units = {
        "pipelines": {"step"},
        "runner": {"command"},
        "graph": {"task", "object"},
        "graph-fails": {"task"},
        "dataflow": {"job"},
    }
    for kind, name in work.items():
        table = pandas.read_csv(io.StringIO(cli(cluster, "export", name).stdout))
        assert (
            expected_units[kind] <= set(table["unit"]) <= {"task", "object", *expected_units[kind]}
        )
        assert set(table["experiment"]) == {name}
        as_json = pandas.read_json(
            io.StringIO(cli(cluster, "export", name, "--format", "json").stdout)
        )
        assert len(as_json) == len(table)
        parquet = tmp_path / f"{kind}.parquet"
        cli(cluster, "export", name, "--format", "parquet", "-o", str(parquet))
        assert len(pandas.read_parquet(parquet)) == len(table)
    steps = pandas.read_csv(io.StringIO(cli(cluster, "export", "pipe-fails").stdout))
    assert list(steps["state"]) == ["finished", "failed"]
    assert "exited with code 2" in steps["error"].iloc[1]


@pytest.mark.timeout(60)
def test_show_prints_what_is_needed_to_reproduce(
    cluster: LocalCluster, work: dict[str, str]
) -> None:
    out = cli(cluster, "show", "pipe-fails").stdout
    assert "pipe-fails  (pipelines)" in out and "FAILED" in out
    assert "code hash:" in out and "shoal 0.1.0, Python" in out
    assert "packages:" in out and "nodes at start: 3" in out
    assert all(node in out for node in NODES)
    assert "exit 2" in out or "exited with code 2" in out
    with_packages = cli(cluster, "show", work["graph"], "--packages").stdout
    assert "pytest==" in with_packages
    raw = cluster.client().raw_status(work["dataflow"])["reproduction"]
    assert raw["parameters"]["network"] and raw["parameters"]["max_rounds"] == 5
    assert any(s["path"].endswith(".py") for s in raw["sources"])  # the jobs' own code
    missing = cli(cluster, "show", "no-such-record", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.timeout(120)
def test_a_finished_graph_session_outlives_the_controller(
    cluster: LocalCluster, work: dict[str, str]
) -> None:
    g = Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password)
    try:
        open_session = g.new_session("left-open")
        with open_session.bind_only():
            tasks.Sleep(blob(b"x"), 60.0, name="sleeper")
            open_session.submit()
        left_open = g.transport.records[open_session.session_id]
        # a running task is in its record as running (written behind the scheduler)
        wait_until(
            lambda: (
                [t["state"] for t in cluster.client().raw_status(left_open)["tasks"]] == ["running"]
            ),
            10,
            "the task recorded as running",
        )
        cluster.stop_controller(signal.SIGKILL)  # a crash: nothing is closed on the way
    finally:
        with contextlib.suppress(Exception):  # its controller is gone: any error will do
            g.close()
    cluster.start_controller()
    client = cluster.client()
    client.wait_for_nodes(NODES, timeout=30)
    rows = listing(cluster)
    assert rows[work["graph"]]["state"] == "FINISHED"
    kept = client.raw_status(work["graph"])
    assert [t["name"] for t in kept["tasks"]] == ["join"]
    # the session the restart interrupted is cancelled, and says why
    interrupted = client.raw_status(left_open)
    assert interrupted["state"] == "CANCELLED" and "controller restarted" in interrupted["error"]
    assert [t["state"] for t in interrupted["tasks"]] == ["cancelled"]


def test_a_database_from_before_records_still_opens(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    asyncio.run(_upgrade(url))


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_a_postgres_database_from_before_records_still_opens() -> None:
    from pgserver import PostgresServer

    with PostgresServer() as pg:
        asyncio.run(_upgrade(pg.url))


async def _upgrade(url: str) -> None:
    """Make the schema as shoal had it before records, then open it with this shoal."""
    db = Database(url)
    try:
        await db.create_schema()
        async with db.write() as conn:
            await conn.execute(text("DROP TABLE record_items"))
            await conn.execute(text("ALTER TABLE experiments DROP COLUMN reproduction"))
            await conn.execute(text("ALTER TABLE experiments DROP COLUMN summary"))
            await conn.execute(
                text("INSERT INTO users (login, password_hash, created_at) VALUES ('u', 'x', 0)")
            )
            await conn.execute(
                text(
                    "INSERT INTO experiments (id, owner_id, name, kind, status, created_at) "
                    "VALUES ('e1', 1, 'old', 'pipelines', 'FINISHED', 0)"
                )
            )
        await db.create_schema()
        async with db.read() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("experiments")}
            )
            row = (await conn.execute(text("SELECT name, reproduction FROM experiments"))).one()
        assert "record_items" in tables and {"reproduction", "summary"} <= columns
        assert tuple(row) == ("old", None)
    finally:
        await db.close()
