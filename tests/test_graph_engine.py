"""The graph engine end to end, in process: shoal.graph's Client against real local
clusters (a controller and agent processes), as the Rain user guide describes it.

Big graphs, big objects moving between agents, every kind of failure, and the
session calls (wait_some, unkeep, update, info, names)."""

from __future__ import annotations

import hashlib
import random
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from shoal import LocalCluster
from shoal.graph import (
    Client,
    Input,
    Output,
    SessionException,
    TaskException,
    blob,
    remote,
    tasks,
)
from shoal.graph.session import GraphError
from waiting import wait_until

NODES = ["node-0", "node-1", "node-2"]
MB = 2**20


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Three agents shared by the tests of this module that do not kill any."""
    with LocalCluster(NODES) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c:
        yield c


# --- remote functions used below --------------------------------------------------------


@remote(outputs=Output(encode="pickle"))
def leaf(ctx, i):
    return i * i


@remote(outputs=Output(encode="pickle"))
def combine(ctx, parts):
    return sum(p.load() for p in parts)


@remote(outputs=("data", "digest"))
def produce(ctx, size, seed):
    data = random.Random(seed).randbytes(size)
    return {"data": data, "digest": hashlib.sha256(data).hexdigest()}


@remote()
def checksum(ctx, data, hold):
    digest = hashlib.sha256(data.get_bytes()).hexdigest()
    time.sleep(hold)  # keeps this consumer's cpu busy, so the others go elsewhere
    return digest


@remote()
def boom(ctx):
    ctx.debug("about to fail, step {}", 1)
    ctx.debug("second debug line")
    raise ValueError("boom 42")


@remote(inputs={"data": Input(content_type="json")})
def wants_json(ctx, data):
    return str(data.load())


@remote()
def report_in_and_hold(ctx, port, seconds):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall((ctx.info.node or "").encode() + b"\n")
    time.sleep(seconds)
    return b"done"


@remote()
def note_user_info(ctx):
    ctx.info.user["seen"] = ctx.spec.user.get("asked", 0) + 1
    ctx.debug("noted")
    return b"ok"


# --- a big graph -------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_two_thousand_remote_tasks_sum_in_layers(client: Client) -> None:
    n = 1000
    with client.new_session(name="layered sums") as session:
        layer = [leaf(i) for i in range(n)]
        made = list(layer)
        while len(layer) > 1:
            layer = [combine(layer[i : i + 2]) for i in range(0, len(layer), 2)]
            made += layer
        assert len(made) == 2001
        (root,) = layer
        root.output.keep()
        session.submit()
        assert root.output.fetch().load() == sum(i * i for i in range(n))
        session.update(made[:n])
        nodes = {t.info.node for t in made[:n]}
        assert nodes <= set(NODES), nodes
        assert len(nodes) >= 2, f"1000 independent tasks all ran on {nodes}"


# --- a big object between agents ---------------------------------------------------------


@pytest.mark.timeout(180)
def test_fifty_megabytes_move_between_agents_intact(client: Client) -> None:
    with client.new_session(name="50 MB") as session:
        made = produce(50 * MB, 7)
        data, digest = made.outputs["data"], made.outputs["digest"]
        data.keep()
        digest.keep()
        # Six consumers, each holding a cpu for 2 s: they cannot all fit on the node
        # that holds the data, so some must fetch it from there.
        consumers = [checksum(data, 2.0) for _ in range(6)]
        for c in consumers:
            c.output.keep()
        session.submit()
        expected = digest.fetch().get_str()
        assert [c.output.fetch().get_str() for c in consumers] == [expected] * 6
        fetched = data.fetch().get_bytes()
        assert len(fetched) == 50 * MB
        assert hashlib.sha256(fetched).hexdigest() == expected
        session.update([made, *consumers])
        producer_node = made.info.node
        consumer_nodes = {c.info.node for c in consumers}
        assert producer_node in NODES
        assert consumer_nodes - {producer_node}, (
            f"every consumer ran on {producer_node}, where the data was made"
        )


# --- failures ----------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_raising_task_fails_its_session_only(client: Client) -> None:
    other = client.new_session(name="bystander")
    with client.new_session(name="failing") as session:
        t = boom()
        session.submit()
        with pytest.raises(TaskException) as caught:
            session.wait_all()
        text = str(caught.value)
        assert isinstance(caught.value, SessionException)
        assert "boom" in text  # the task's name
        assert "ValueError" in text and "boom 42" in text
        assert "about to fail, step 1" in text and "second debug line" in text
        assert "test_graph_engine.py" in text  # where the task was made
        assert session.failed
        with pytest.raises(SessionException):
            session.wait_all()
        with pytest.raises(SessionException):
            t.update()
        with pytest.raises(SessionException):
            blob(b"more")
    with other.bind_only():
        ok = tasks.Concat([blob(b"still "), blob(b"fine")])
        ok.output.keep()
    other.submit()
    assert ok.output.fetch().get_bytes() == b"still fine"
    other.close()
    with client.new_session() as again:
        ok = tasks.Concat([blob(b"new "), blob(b"session")])
        ok.output.keep()
        again.submit()
        assert ok.output.fetch().get_bytes() == b"new session"


@pytest.mark.timeout(60)
def test_a_failing_program_reports_its_stderr(client: Client) -> None:
    with client.new_session() as session:
        tasks.Execute("echo 'no such thing: frobnicate' >&2; exit 1", shell=True, name="bad/exit")
        session.submit()
        with pytest.raises(TaskException) as caught:
            session.wait_all()
        text = str(caught.value)
        assert "no such thing: frobnicate" in text
        assert "bad/exit" in text


@pytest.mark.timeout(60)
def test_an_input_of_the_wrong_content_type_is_refused(client: Client) -> None:
    with client.new_session() as session:
        with pytest.raises((ValueError, TypeError, GraphError, SessionException)) as caught:
            t = wants_json(blob("not json at all"))  # content type 'text'
            t.output.keep()
            session.submit()
            t.output.fetch()
        text = str(caught.value)
        assert "json" in text and "text" in text, text


@pytest.mark.timeout(60)
def test_fetching_an_object_that_is_not_kept_says_so(client: Client) -> None:
    with client.new_session() as session:
        t = tasks.Concat([blob(b"a"), blob(b"b")])
        session.submit()
        t.wait()  # waiting needs no keep
        with pytest.raises(GraphError, match="not kept"):
            t.output.fetch()


@pytest.mark.timeout(90)
def test_a_killed_agent_fails_the_session_naming_the_node() -> None:
    with (
        LocalCluster(["node-0", "node-1"]) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
        socket.create_server(("127.0.0.1", 0)) as server,
    ):
        server.settimeout(60)
        port = server.getsockname()[1]
        session = c.new_session(name="doomed")
        with session.bind_only():
            holders = [report_in_and_hold(port, 30) for _ in range(2)]
            sleepers = [tasks.Execute("sleep 30") for _ in range(2)]
        session.submit()
        # A holder tells, once it runs, the node it runs on: the first one to call
        # in names the victim (no sleeping, no polling).
        conn, _addr = server.accept()
        with conn, conn.makefile("rb") as f:
            victim = f.readline().decode().strip()
        if not victim:  # ctx.info.node not filled in on the node: ask the controller
            session.update(holders)
            victim = next(h.info.node for h in holders if h.info.start_time is not None)
        assert victim in cluster.node_names, victim
        cluster.kill_agent(victim)
        started = time.monotonic()
        with pytest.raises(SessionException) as caught:
            session.wait([*holders, *sleepers])
        assert victim in str(caught.value)
        assert time.monotonic() - started < 25, "the lost node was noticed too late"
        with pytest.raises(SessionException):
            session.wait_all()
        session.close()  # never raises, never hangs


@pytest.mark.timeout(90)
def test_a_suspect_node_gets_no_new_tasks_until_it_is_heard_again() -> None:
    with (
        LocalCluster(["node-0", "node-1"], heartbeat_timeout=1.5, lost_timeout=60) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
        cluster.client() as api,
    ):
        frozen = cluster.agents["node-1"]
        frozen.send_signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: [n.name for n in api.get_nodes()] == ["node-0"],
                timeout=30,
                what="node-1 suspect",
            )
            with c.new_session() as session:
                made = [tasks.Execute("true", name=f"t{i}") for i in range(6)]
                session.submit()
                session.wait(made)
                session.update(made)
                assert {t.info.node for t in made} == {"node-0"}
        finally:
            frozen.send_signal(signal.SIGCONT)
        wait_until(lambda: len(api.get_nodes()) == 2, timeout=30, what="node-1 back")
        with c.new_session() as session:
            # More at once than node-0 has cpus for: node-1 takes its share again.
            made = [tasks.Execute("sleep 0.3", name=f"u{i}") for i in range(12)]
            session.submit()
            session.wait(made)
            session.update(made)
            assert {t.info.node for t in made} == {"node-0", "node-1"}


# --- the session calls -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_wait_some_returns_what_finished_first(client: Client) -> None:
    with client.new_session() as session:
        a = blob("data")
        fast = tasks.Sleep(a, 0.1, name="fast")
        slow = tasks.Sleep(a, 20.0, name="slow")
        session.submit()
        started = time.monotonic()
        done_tasks, done_objects = session.wait_some([fast, slow])
        assert time.monotonic() - started < 15
        assert done_tasks == [fast]
        assert done_objects == []
        done_tasks, done_objects = session.wait_some([fast.output, slow.output])
        assert done_tasks == []
        assert done_objects == [fast.output]
    # closing the session stops `slow`; nothing waits for its 20 s


@pytest.mark.timeout(60)
def test_unkeep_frees_an_object_for_good(client: Client) -> None:
    with client.new_session() as session:
        t = tasks.Concat([blob(b"kept "), blob(b"once")])
        t.output.keep()
        session.submit()
        assert t.output.fetch().get_bytes() == b"kept once"
        t.output.unkeep()  # at once, no submit needed
        assert not t.output.is_kept()
        with pytest.raises(GraphError, match="not kept"):
            t.output.fetch()
        with pytest.raises(GraphError):
            t.output.unkeep()
        with pytest.raises(GraphError):
            t.output.keep()  # keep() only before the submit
        tasks.Concat([t.output, blob(b"!")])
        session.submit()  # reads an object that is gone: the controller refuses it
        with pytest.raises(GraphError, match="was freed: it was not kept"):
            session.wait_all()


@pytest.mark.timeout(60)
def test_update_fills_task_and_object_info(client: Client) -> None:
    with client.new_session() as session:
        sleeper = tasks.Execute("sleep 1", name="main_tasks/training/train1")
        noted = note_user_info()
        noted.spec.user["asked"] = 41
        noted.output.keep()
        assert sleeper.info is None  # nothing known before update()
        session.submit()
        session.wait_all()
        session.update([sleeper, noted, noted.output])
        info = sleeper.info
        assert info is not None
        assert info.node in NODES and info.governor.startswith("127.0.0.1:")
        assert info.start_time is not None
        assert info.duration is not None and info.duration >= 1.0
        assert info.error == ""
        assert noted.info.user["seen"] == 42
        assert "noted" in noted.info.debug
        assert noted.output.info.size == 2
        assert sleeper.name == "main_tasks/training/train1"  # '/' groups are kept
        assert noted.name == "note_user_info"


@pytest.mark.timeout(60)
def test_task_names_with_groups_survive_submit(client: Client) -> None:
    names = ["my-plain-name", "main_tasks/training/train1", "main_tasks/training/train1"]
    with client.new_session() as session:
        made = [tasks.Concat([blob(b"x")], name=n) for n in names]
        session.submit()
        session.wait(made)
        for t in made:
            t.update()
        assert [t.name for t in made] == names
        assert [t.name.split("/")[:-1] for t in made][1] == ["main_tasks", "training"]


def test_the_first_graph_after_an_agent_joins_runs_on_every_cpu() -> None:
    """Workers are warm from the agent's start: two 1 s Sleeps submitted the moment
    a 2-cpu node is up run side by side, not one after the other."""
    with (
        LocalCluster(["warm"], cpus=2) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
        c.new_session() as session,
    ):
        naps = [tasks.Sleep(blob(b"x"), 1.0) for _ in range(2)]
        session.submit()
        session.wait_all()
        session.update(naps)
    first, second = sorted(naps, key=lambda t: t.info.start_time)
    assert first.info.duration is not None
    first_end = first.info.start_time.timestamp() + first.info.duration
    assert second.info.start_time.timestamp() < first_end, "the second Sleep waited for the first"
