"""Flags in batches: many operations per store write, each caller its own answer.

The flag writer coalesces all changes of a flag in a batch into one row write,
yet answers every caller with the exact value its own operation produced, and
wakes a waiter for a value the flag held only in the middle of a batch.
Executors reach the same service through their agent's connection; the REST
API finds an experiment by name from memory, and forgets it with the experiment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgserver import PostgresServer
from processes import add_user
from shoal import Experiment, FlagValues, LocalCluster, Pipeline
from shoal.client.remote import RemoteClientException
from shoal.controller.flags import HISTORY, Flag, FlagService
from shoal.library.flags import WaitForExactFlagResultTask
from shoal.model.pipeline import Task
from shoal.store import experiments as exp_queries
from shoal.store import flags as flag_queries
from shoal.store import users as user_queries
from shoal.store.database import Database, default_sqlite_url

ADDS = 300


class CountUp(Task):
    """Increments ``flag`` ``times`` times; the counts it was answered with."""

    def __init__(self, flag: str, times: int, name: str) -> None:
        super().__init__(name)
        self.flag, self.times = flag, times

    def run(self) -> list[int]:
        from shoal.client.executor_flags import executor_flags

        flags = executor_flags()
        return [flags.increment(self.flag).int_value for _ in range(self.times)]


class SetBadName(Task):
    """Sets a flag whose name no store column holds; the status it was refused with."""

    def run(self) -> int:
        from shoal.client.executor_flags import FlagCallError, executor_flags

        try:
            executor_flags().set("x" * 300, FlagValues("v", 1))
        except FlagCallError as exc:
            return exc.status
        return 0


async def _batched_adds(db_url: str) -> None:
    db = Database(db_url)
    writes: list[float] = []
    db.on_write = writes.append
    try:
        await db.create_schema()
        async with db.write() as conn:
            owner = await user_queries.put_user(conn, "ann", "not-a-hash")
            await exp_queries.create_experiment(conn, "exp-1", owner, "e", "runner", "RUNNING", [])
        flags = FlagService(db)
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(flags.run())
            await flags.get("exp-1", "n")  # loaded: the adds below queue at once
            writes.clear()
            # A waiter for a value the flag holds only inside the batch.
            middle = tg.create_task(flags.wait("exp-1", "n", (None, ADDS // 2), 0, 60))
            answers = await asyncio.gather(*(flags.add("exp-1", "n", 1) for _ in range(ADDS)))
            woken = await asyncio.wait_for(middle, 60)
            # A wait asked after the change still finds it (by version, not by polling).
            late = await flags.wait("exp-1", "n", (None, ADDS // 2), 0, 0)
            writer.cancel()
        async with db.read() as conn:
            stored = await flag_queries.get_flag(conn, "exp-1", "n")
    finally:
        await db.close()
    counts = sorted(values[1] for values, _version in answers)
    assert counts == list(range(1, ADDS + 1))  # each caller its own exact count
    assert sorted(version for _values, version in answers) == list(range(1, ADDS + 1))
    assert woken == ((None, ADDS // 2), ADDS // 2)
    assert late == woken
    assert stored == (None, ADDS, ADDS)
    # queued together, stored together: far fewer writes than operations
    assert 1 <= len(writes) <= ADDS // 10, len(writes)


@pytest.mark.timeout(120)
def test_a_batch_answers_each_caller_its_own_count_sqlite(tmp_path: Path) -> None:
    asyncio.run(_batched_adds(default_sqlite_url(tmp_path)))


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_a_batch_answers_each_caller_its_own_count_postgres() -> None:
    with PostgresServer() as pg:
        asyncio.run(_batched_adds(pg.url))


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[LocalCluster]:
    with LocalCluster(["node-a", "node-b"]) as cluster:
        yield cluster


@pytest.mark.timeout(180)
def test_executors_get_distinct_counts_and_a_wait_is_woken(two_nodes: LocalCluster) -> None:
    client = two_nodes.client()
    steps, times = 6, 25
    total = 2 * steps * times
    experiment = Experiment()
    for node in client.get_nodes():
        here = client.get_nodes().filter(lambda n, name=node.name: n.name == name)
        stage = [CountUp("counter", times, f"up-{node.name}-{i}") for i in range(steps)]
        waiter = WaitForExactFlagResultTask("counter", FlagValues(None, total), timeout=120)
        pipeline = Pipeline().then([*stage, waiter]).then(SetBadName("bad-name"))
        experiment = experiment.map(pipeline, here)
    client.prepare_experiment(experiment, "batched")
    client.wait("batched", until="ready", timeout=120)
    client.start_execution("batched")
    info = client.wait("batched", timeout=150)
    assert all(r.result.is_success for r in info.execution_result), info
    counts: list[int] = []
    for report in info.execution_result:
        for name, results in report.result.unwrap().items():
            value = results[0].unwrap()
            if name.startswith("up-"):
                counts += value
            elif name == "bad-name":
                assert value == 400, value  # the store could not hold that name
            else:
                assert value == {"text_value": None, "int_value": total}, value  # woken
    assert sorted(counts) == list(range(1, total + 1))
    assert client.get_flag_values("batched", "counter") == FlagValues(None, total)


@pytest.mark.timeout(120)
def test_a_flag_name_follows_its_experiment_through_replacement_and_deletion(
    two_nodes: LocalCluster,
) -> None:
    client = two_nodes.client()
    path = "/api/experiments/again/flags/n/increment"
    with httpx.Client(
        base_url=two_nodes.endpoint,
        headers={"Authorization": f"Bearer {client.token()}"},
        timeout=30,
    ) as http:
        client.open_run("again")
        assert http.post(path).json()["int_value"] == 1
        assert http.post(path).json()["int_value"] == 2
        client.open_run("again")  # a new run of that name replaces the old one
        assert http.post(path).json()["int_value"] == 1
        client.finish_run("again")
        client.delete_experiment("again")
        assert http.post(path).status_code == 404
        client.open_run("again")
        with pytest.raises(RemoteClientException):
            client.get_flag_values("again", "n")  # a new experiment: no flag yet
        assert http.post(path).json()["int_value"] == 1


@pytest.mark.timeout(120)
def test_a_user_reaches_only_their_own_experiment_of_a_name(two_nodes: LocalCluster) -> None:
    client = two_nodes.client()
    client.open_run("mine")
    client.set_flag_values("mine", "secret", FlagValues("s", 1))
    add_user(two_nodes.db_url, "eve", "eve-password-1")
    eve = two_nodes.client("eve", "eve-password-1")
    eve.open_run("hers")
    eve.set_flag_values("hers", "n", FlagValues("e", 7))
    with httpx.Client(
        base_url=two_nodes.endpoint,
        headers={"Authorization": f"Bearer {eve.token()}"},
        timeout=30,
    ) as http:
        # Twice: the second time a name comes from memory, which must not be shared.
        for _ in range(2):
            assert http.get("/api/experiments/mine/flags/secret").status_code == 404
            assert http.post("/api/experiments/mine/flags/secret/increment").status_code == 404
            assert http.get("/api/experiments/hers/flags/n").json()["int_value"] == 7
    with pytest.raises(RemoteClientException):
        client.get_flag_values("hers", "n")  # nor the other way round
    assert client.get_flag_values("mine", "secret") == FlagValues("s", 1)


def test_a_wait_finds_the_first_matching_value_after_its_version_within_the_history() -> None:
    flag = Flag()
    for version in range(1, HISTORY + 11):  # the first ten are forgotten
        flag.took(version, ("stage", version % 3))
    assert len(flag.history) == HISTORY
    assert sum(len(v) for v in flag.versions_of.values()) == HISTORY
    assert flag.first_since(("stage", 0), 0) == 12  # 3, 6 and 9 are forgotten
    assert flag.first_since(("stage", 1), 20) == 22
    assert flag.first_since(("stage", 2), HISTORY + 9) == HISTORY + 10
    assert flag.first_since(("stage", 0), HISTORY + 9) is None
    assert flag.first_since(("other", 0), 0) is None
