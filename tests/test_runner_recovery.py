"""A run's command records when the controller dies: nothing a node ran is lost.

A node keeps each record of a run's command until the controller confirms it
stored it, and sends it again after it reconnects; the run and the nodes
granted to it are in the store, so a controller started on the same database
takes those records as the one that died would have.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgserver import PostgresServer
from probe_node import ProbeNode
from runner_helpers import run_inline
from shoal import LocalCluster
from shoal.agent.command_records import CommandLedger
from shoal.controller.commands import CommandRecorder
from shoal.controller.links import Link
from shoal.controller.registry import NodeRegistry
from shoal.protocol import command_messages as cm
from shoal.protocol.command_messages import CommandRecord, CommandsStored
from shoal.runner import Server, ServerList, SubstrMatcher
from shoal.runner.context import current
from shoal.store import commands as command_queries
from shoal.store import experiments as exp_queries
from shoal.store import users as user_queries
from shoal.store.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the cluster's own SQLite file; else a PostgreSQL server of the test's own."""
    if request.param == "sqlite":
        yield None
        return
    with PostgresServer() as pg:
        yield pg.url


@pytest.mark.timeout(150)
def test_records_of_a_run_outlive_a_controller_killed_mid_command(
    tmp_path: Path, db_url: str | None
) -> None:
    seen: dict[str, object] = {}
    with LocalCluster(["a"], workdir=tmp_path, heartbeat_timeout=5, db_url=db_url) as cluster:

        def exp(servers: ServerList) -> None:
            s = servers[0]
            ready = SubstrMatcher("before")
            across = s.run_cmd("echo before; read x; echo after $x", stdout=ready)
            assert ready.wait(20)
            offline = s.run_cmd("read y; echo offline $y; echo to-stderr >&2; exit 4")

            cluster.stop_controller(signal.SIGKILL)
            # The channel goes straight to the node: commands go on without a controller.
            offline.stdin("done\n", close=True)
            seen["offline"] = offline.wait()

            cluster.start_controller()
            with cluster.client() as client:
                client.wait_for_nodes(["a"], timeout=30)
                # The run is still the user's: a new channel to another endpoint of it
                # is granted by the controller that never saw the run opened.
                grant = httpx.post(
                    f"{cluster.endpoint}/api/channels",
                    json={"node": "a", "endpoint": f"commands/{current().experiment_id}"},
                    headers={"Authorization": f"Bearer {client.token()}"},
                    timeout=10,
                )
                seen["grant"] = grant.status_code
            across.stdin("go\n", close=True)
            seen["across"] = across.wait()
            seen["after"] = s.run_cmd("echo after-restart").wait()

        servers = ServerList(Server("a", "127.0.0.1"))
        [outcome] = run_inline(cluster, servers, exp, raise_on_rc=False)
        assert outcome.status == "finished", outcome.error
        assert seen == {"offline": 4, "grant": 200, "across": 0, "after": 0}
        with cluster.client() as client:
            records = {r["cmd"]: r for r in client.raw_status("exp")["commands"]}

    assert len(records) == 3, records
    offline = records["read y; echo offline $y; echo to-stderr >&2; exit 4"]
    assert (offline["return_code"], offline["error"]) == (4, None)
    assert (offline["stdout"], offline["stderr"]) == ("offline done\n", "to-stderr\n")
    across = records["echo before; read x; echo after $x"]
    assert (across["return_code"], across["error"]) == (0, None)
    assert across["stdout"] == "before\nafter go\n"
    assert across["started_at"] <= offline["started_at"] <= offline["finished_at"]
    assert offline["finished_at"] <= across["finished_at"]
    assert records["echo after-restart"]["stdout"] == "after-restart\n"


def record(run: str, node_record: str, cmd: str) -> CommandRecord:
    now = time.time()
    return CommandRecord(
        record=node_record,
        command=node_record,
        run=run,
        cmd=cmd,
        started_at=now - 1,
        stdout=b"out\n",
        ended=True,
        finished_at=now,
        code=0,
    )


@pytest.mark.timeout(90)
def test_a_nodes_record_is_taken_only_for_a_run_it_was_granted(tmp_path: Path) -> None:
    with LocalCluster(["a"], workdir=tmp_path) as cluster:
        granted = ProbeNode(cluster.endpoint, cluster.agent_token, "granted")
        stranger = ProbeNode(cluster.endpoint, cluster.agent_token, "stranger")
        try:
            with cluster.client() as client:
                client.wait_for_nodes(["granted", "stranger"], timeout=30)
                run = client.open_run("records")
                reply = httpx.post(
                    f"{cluster.endpoint}/api/channels",
                    json={"node": "granted", "endpoint": f"commands/{run}"},
                    headers={"Authorization": f"Bearer {client.token()}"},
                    timeout=10,
                )
                assert reply.status_code == 200, reply.text

                # A node nobody granted to the run: refused, and told to forget it.
                stranger.send(record(run, "forged", "rm -rf /"))
                assert stranger.next_of(CommandsStored).records == ["forged"]

                # A granted node's record after its run ended is still taken.
                client.finish_run("records")
                granted.send(record(run, "late", "sleep 1"))
                assert granted.next_of(CommandsStored).records == ["late"]
                # Sent again (the confirmation was lost): still one record.
                granted.send(record(run, "late", "sleep 1"))
                assert granted.next_of(CommandsStored).records == ["late"]
                rows = client.raw_status("records")["commands"]
        finally:
            granted.close()
            stranger.close()
    assert [(r["node"], r["cmd"], r["stdout"], r["return_code"]) for r in rows] == [
        ("granted", "sleep 1", "out\n", 0)
    ]


@pytest.mark.timeout(10)
def test_a_node_keeps_its_newest_records_within_bounds() -> None:
    ledger = CommandLedger(clock=lambda: 100.0, max_records=3, max_bytes=10)
    for i in range(4):
        ledger.started(f"r{i}", f"c{i}", "run", "true", "user:ann", pid=1)
    assert [m.record for m in ledger.messages()] == ["r1", "r2", "r3"]
    ledger.output("r3", "stdout", b"x" * 8)
    ledger.output("r2", "stdout", b"y" * 8)  # 16 bytes kept: the oldest go until 10 fit
    assert [(m.record, m.stdout) for m in ledger.messages()] == [("r3", b"x" * 8)]

    ledger = CommandLedger(clock=lambda: 100.0)
    ledger.started("big", "c", "run", "yes", "user:ann", pid=1)
    ledger.output("big", "stderr", b"z" * (cm.KEEP + 1))  # one byte past KEEP: truncated
    ledger.ended("big", cm.CommandExit(command="c", code=None, error="killed"))
    [message] = ledger.messages()
    assert (len(message.stderr), message.truncated) == (cm.KEEP, True)
    assert (message.ended, message.error, message.finished_at) == (True, "killed", 100.0)
    ledger.stored(["big", "unknown"])
    assert ledger.messages() == []


@pytest.mark.timeout(30)
def test_a_record_the_store_refuses_for_good_does_not_sink_the_others(tmp_path: Path) -> None:
    """A record of a run deleted meanwhile (the store refuses its row for good) is
    dropped alone, once, with its node told to forget it; the batch's other records
    are stored. (On SQLite, with its foreign keys on, as the controller runs it.)"""

    async def main() -> tuple[list[str], bool, list[object]]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await db.create_schema()
        async with db.write() as conn:
            owner = await user_queries.put_user(conn, "ann", "not-a-hash")
            await exp_queries.create_experiment(
                conn, "run-1", owner, "kept", "runner", "RUNNING", []
            )
        registry = NodeRegistry()
        told: list[object] = []
        link = Link("n1", None)
        link.send = told.append  # type: ignore[method-assign]
        registry.links["n1"] = link
        recorder = CommandRecorder(db, registry, auth=None)  # type: ignore[arg-type]
        await recorder.load()
        recorder.run_nodes["run-1"].add("n1")
        recorder.run_owners["gone"] = owner
        recorder.run_nodes["gone"].add("n1")
        for run, node_record in (("run-1", "kept"), ("gone", "orphan")):
            recorder.from_agent("n1", record(run, node_record, f"echo {node_record}"))
        await recorder.flush()
        async with db.read() as conn:
            rows = await command_queries.list_commands(conn, "run-1")
            rows += await command_queries.list_commands(conn, "gone")
        left = bool(recorder._records)
        await db.close()
        return [r["cmd"] for r in rows], left, told

    cmds, left, told = asyncio.run(main())
    assert cmds == ["echo kept"] and not left
    stored = sorted(i for m in told if isinstance(m, CommandsStored) for i in m.records)
    assert stored == ["kept", "orphan"]  # stored, and refused for good: both forgotten
