"""The graph WebSocket under bad input: every wrong request gets a RequestFailed that names
the problem, the controller stays up, and a user cannot reach another user's session."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from shoal import LocalCluster
from shoal.client.remote import RemoteClientException
from shoal.graph import Client, SessionException, TaskException, blob, remote, tasks
from shoal.graph.ids import ID
from shoal.graph.session import GraphError
from shoal.protocol.graph_messages import (
    GraphReply,
    OpenSession,
    RequestFailed,
    SessionOpened,
    Submit,
    SubmitInput,
    SubmitObject,
    SubmitTask,
    Unkeep,
    Wait,
    WaitDone,
)
from waiting import wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["g1"]) as c:
        yield c


class Raw:
    """A bare graph WebSocket that sends exactly what a test wants."""

    def __init__(
        self, cluster: LocalCluster, login: str | None = None, password: str | None = None
    ):
        token = cluster.client(login, password).token()
        url = cluster.endpoint.replace("http://", "ws://") + "/api/graph/ws"
        # Entered by hand: websockets warns about connections used outside a `with`.
        self.ws = connect(url, additional_headers={"Authorization": f"Bearer {token}"}).__enter__()
        self.decoder = msgspec.msgpack.Decoder(list[GraphReply])

    def call(self, message: object) -> object:
        self.ws.send(msgspec.msgpack.encode([message]))
        (reply,) = self.decoder.decode(self.ws.recv(timeout=20))
        return reply

    def session(self) -> int:
        reply = self.call(OpenSession(1, "raw"))
        assert isinstance(reply, SessionOpened)
        return reply.session


def client_of(cluster: LocalCluster) -> Client:
    return Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password)


def concat(tid: int, inputs: list[int], outputs: list[int]) -> SubmitTask:
    return SubmitTask(tid, "concat", pickle.dumps(None), [SubmitInput(i) for i in inputs], outputs)


@pytest.mark.timeout(60)
def test_bad_submits_are_refused_with_a_reason(cluster: LocalCluster) -> None:
    raw = Raw(cluster)
    sid = raw.session()
    cases = {
        "neither data nor a task": Submit(2, sid, objects=[SubmitObject(1)]),
        "does not have": Submit(3, sid, tasks=[concat(2, [99], [])]),
        "form a cycle": Submit(
            4,
            sid,
            tasks=[concat(10, [13], [11]), concat(12, [11], [13])],
            objects=[SubmitObject(11), SubmitObject(13)],
        ),
        "output of two tasks": Submit(
            5,
            sid,
            tasks=[concat(20, [], [21]), concat(22, [], [21])],
            objects=[SubmitObject(21)],
        ),
        "data_type": Submit(6, sid, objects=[SubmitObject(30, data=b"x", data_type="tree")]),
        "cpus": Submit(7, sid, tasks=[SubmitTask(40, "concat", pickle.dumps(None), cpus=0)]),
        "was not sent": Submit(
            8, sid, tasks=[SubmitTask(50, "python", pickle.dumps({}), function="ab" * 32)]
        ),
        "does not have that digest": Submit(9, sid, functions={"ab" * 32: b"not this"}),
    }
    for expected, request in cases.items():
        reply = raw.call(request)
        assert isinstance(reply, RequestFailed), expected
        assert expected in reply.message
        assert not reply.session_failed
    # All or nothing: none of the refused submits left anything behind.
    reply = raw.call(Wait(10, sid, [1]))
    assert isinstance(reply, RequestFailed) and "no task or object 1" in reply.message


@pytest.mark.timeout(60)
def test_a_quiet_submit_is_answered_only_when_it_fails(cluster: LocalCluster) -> None:
    raw = Raw(cluster)
    sid = raw.session()
    good = Submit(2, sid, objects=[SubmitObject(1, data=b"x", keep=True)], quiet=True)
    bad = Submit(3, sid, tasks=[concat(2, [99], [])], quiet=True)
    raw.ws.send(msgspec.msgpack.encode([good, bad, Wait(4, sid, [1])]))
    replies = []
    while not replies or replies[-1].req != 4:
        replies += raw.decoder.decode(raw.ws.recv(timeout=20))
    # Nothing for the good one; the bad one's failure comes before the wait's answer.
    assert [type(r) for r in replies] == [RequestFailed, WaitDone]
    assert replies[0].req == 3 and "does not have" in replies[0].message


@pytest.mark.timeout(60)
def test_a_quiet_unkeep_is_answered_only_when_it_fails(cluster: LocalCluster) -> None:
    raw = Raw(cluster)
    sid = raw.session()
    raw.call(Submit(2, sid, objects=[SubmitObject(1, data=b"x", keep=True)]))
    good = Unkeep(3, sid, [1], quiet=True)
    bad = Unkeep(4, sid, [77], quiet=True)
    raw.ws.send(msgspec.msgpack.encode([good, bad, Wait(5, sid, [1])]))
    replies = []
    while not replies or replies[-1].req != 5:
        replies += raw.decoder.decode(raw.ws.recv(timeout=20))
    assert [type(r) for r in replies] == [RequestFailed, WaitDone]
    assert replies[0].req == 4 and "no object 77" in replies[0].message


@pytest.mark.timeout(60)
def test_a_failed_unkeep_is_raised_by_a_later_call(cluster: LocalCluster) -> None:
    with client_of(cluster) as client, client.new_session() as s:
        kept = blob(b"kept")
        kept.keep()
        s.submit()
        s.transport.unkeep([ID(s.session_id, 999)])  # no such object
        with pytest.raises(GraphError, match=r"an unkeep failed: .*no object 999"):
            kept.update()
        assert kept.fetch().get_bytes() == b"kept"


@pytest.mark.timeout(60)
def test_a_failed_submit_is_raised_by_the_next_call_which_still_answers(
    cluster: LocalCluster,
) -> None:
    with client_of(cluster) as client, client.new_session() as s:
        kept = blob(b"kept")
        kept.keep()
        s.submit()
        s.transport.submit(s.session_id, [], [kept.spec], {}, set())  # its id again
        with pytest.raises(GraphError, match=r"a submit failed: .*already used"):
            kept.update()
        # The stream is in step: the next call gets its own answer.
        assert kept.fetch().get_bytes() == b"kept"


@pytest.mark.timeout(60)
def test_a_task_too_big_for_any_node_fails_its_session(cluster: LocalCluster) -> None:
    raw = Raw(cluster)
    sid = raw.session()
    raw.call(
        Submit(
            2,
            sid,
            tasks=[SubmitTask(1, "concat", pickle.dumps(None), outputs=[2], cpus=10_000)],
            objects=[SubmitObject(2)],
        )
    )
    reply = raw.call(Wait(3, sid, [1]))
    assert isinstance(reply, RequestFailed) and reply.session_failed
    assert "needs 10000 cpus" in reply.message


@pytest.mark.timeout(60)
def test_a_malformed_frame_closes_only_that_connection(cluster: LocalCluster) -> None:
    raw = Raw(cluster)
    raw.ws.send(b"\xc1not msgpack")
    with pytest.raises(ConnectionClosed):
        raw.ws.recv(timeout=20)
    # The controller is fine: a real client runs a graph right after.
    with client_of(cluster) as c, c.new_session() as session:
        t = tasks.Concat((blob("a"), blob("b")))
        t.output.keep()
        session.submit()
        assert t.output.fetch().get_bytes() == b"ab"


@pytest.mark.timeout(60)
def test_sessions_are_private_to_their_user(cluster: LocalCluster) -> None:
    from processes import add_user

    add_user(cluster.db_url, "mallory", "m-pw")
    owner = Raw(cluster)
    sid = owner.session()
    owner.call(Submit(2, sid, objects=[SubmitObject(1, data=b"secret", keep=True)]))
    assert isinstance(owner.call(Wait(3, sid, [1])), WaitDone)
    other = Raw(cluster, "mallory", "m-pw")
    reply = other.call(Wait(1, sid, [1]))
    assert isinstance(reply, RequestFailed) and f"no open session {sid}" in reply.message


@pytest.mark.timeout(60)
def test_using_objects_against_the_rules_is_a_clear_error(cluster: LocalCluster) -> None:
    with client_of(cluster) as c, c.new_session() as session:
        a = blob(b"x")
        session.submit()
        with pytest.raises(GraphError, match="not kept"):
            a.fetch()
        # a constant nobody needs is freed at once: a later submit cannot read it
        tasks.Concat((a,))
        session.submit()
        with pytest.raises(GraphError, match="was freed: it was not kept"):
            session.wait_all()


def held_objects(cluster: LocalCluster, node: str) -> list[str]:
    root = cluster.workdir / "agents" / node / "graph" / "objects"
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*"))


def wait_for_held(cluster: LocalCluster, node: str, expected: list[str]) -> None:
    # The frees travel to the agent after the client's wait returns.
    wait_until(lambda: held_objects(cluster, node) == expected, 20, f"{node} to hold {expected}")


@pytest.mark.timeout(60)
def test_objects_nobody_needs_are_freed_on_the_agent(cluster: LocalCluster) -> None:
    @remote()
    def big(ctx):
        return b"x" * 1_500_000  # over the memory limit: held by the agent as a file

    @remote()
    def size(ctx, data):
        return str(len(data.get_bytes()))

    with client_of(cluster) as c, c.new_session() as session:
        kept = big()
        kept.output.keep()
        dropped = big()
        total = size(dropped)
        total.output.keep()
        session.submit()
        session.wait_all()
        assert total.output.fetch().get_str() == "1500000"
        sid = session.session_id
        wait_for_held(cluster, "g1", [f"{sid}/{kept.output.id.id}"])
        kept.output.unkeep()
        wait_for_held(cluster, "g1", [])
        # Freed objects leave the store at once and are deleted off the agent's loop.
        trash = cluster.workdir / "agents" / "g1" / "graph" / "trash"
        wait_until(lambda: not any(trash.iterdir()), 20, "g1's freed objects to be deleted")


@pytest.mark.timeout(60)
def test_a_worker_that_dies_fails_its_task_and_is_replaced(cluster: LocalCluster) -> None:
    @remote()
    def crash(ctx):
        os._exit(3)

    with client_of(cluster) as c:
        died = pytest.raises(TaskException, match="worker process running the task died")
        with died, c.new_session() as session:
            crash().output.keep()
            session.submit()
            session.wait_all()
        with c.new_session() as session:
            t = tasks.Concat((blob("still "), blob("working")))
            t.output.keep()
            session.submit()
            assert t.output.fetch().get_bytes() == b"still working"


@pytest.mark.timeout(60)
def test_a_failed_task_stops_the_running_tasks_of_its_session(cluster: LocalCluster) -> None:
    @remote()
    def fail_soon(ctx, _started):
        raise RuntimeError("planned failure")

    @remote()
    def spin(ctx):
        while True:  # stopped only by the end of its session
            pass

    with client_of(cluster) as c:
        started = time.monotonic()
        with pytest.raises(TaskException, match="planned failure"), c.new_session() as session:
            spinner = spin()
            fail_soon(tasks.Sleep(blob(b"x"), 0.5))
            session.submit()
            session.wait([spinner])
        # The spinner was stopped: both of the node's workers take tasks again.
        with c.new_session() as session:
            both = [tasks.Sleep(blob(b"x"), 0.2) for _ in range(2)]
            session.submit()
            session.wait(both)
        assert time.monotonic() - started < 30


@pytest.mark.timeout(60)
def test_an_interrupted_wait_ends_the_connection_cleanly(cluster: LocalCluster) -> None:
    c = client_of(cluster)
    session = c.new_session()
    with session.bind_only():
        t = tasks.Execute("sleep 60")
    session.submit()
    timer = threading.Timer(
        0.5, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    )
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        session.wait([t])
    with pytest.raises(SessionException, match="interrupted"):
        session.wait([t])
    session.close()  # does not hang
    c.close()
    with client_of(cluster) as again, again.new_session() as fresh:
        done = tasks.Concat((blob("a"),))
        done.output.keep()
        fresh.submit()
        assert done.output.fetch().get_bytes() == b"a"


@pytest.mark.timeout(120)
def test_a_client_made_while_the_controller_restarts_waits_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.client")
    with LocalCluster(["r1"]) as cluster:
        endpoint = cluster.endpoint
        cluster.stop_controller(signal.SIGKILL)
        made: dict[str, Any] = {}

        def make() -> None:
            try:
                made["client"] = Client(
                    endpoint=endpoint, login=cluster.login, password=cluster.password
                )
            except Exception as exc:
                made["error"] = exc

        thread = threading.Thread(target=make, name="make-client", daemon=True)
        thread.start()
        try:
            wait_until(lambda: "retrying" in caplog.text, 20, "the client to be refused once")
            assert "Connection refused" in caplog.text
            cluster.start_controller()
            thread.join(40)
            assert "client" in made, made
            with made["client"].new_session() as session:
                t = tasks.Concat((blob("a"), blob("b")))
                t.output.keep()
                session.submit()
                assert t.output.fetch().get_bytes() == b"ab"

            # A RemoteClient call made while it is down again also waits for it.
            remote = made["client"].remote
            cluster.stop_controller(signal.SIGKILL)
            caplog.clear()
            listed: list[list[str]] = []
            caller = threading.Thread(
                target=lambda: listed.append(remote.get_nodes().names()), daemon=True
            )
            caller.start()
            wait_until(lambda: "GET /api/nodes failed" in caplog.text, 20, "a refused call")
            cluster.start_controller()
            caller.join(40)
            assert listed and listed[0] in ([], ["r1"])  # the agent may not be back yet
        finally:
            thread.join(40)
            if "client" in made:
                made["client"].close()


@pytest.mark.timeout(30)
def test_a_controller_that_never_comes_is_an_error_after_the_deadline() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RemoteClientException, match="cannot reach"):
        Client(endpoint=f"http://127.0.0.1:{port}", login="x", password="y", retry_deadline=1)
    assert time.monotonic() - started < 10
