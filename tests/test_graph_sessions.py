"""The session rules of shoal.graph's client (stacks, keep and unkeep, several submits,
failures) against an in-memory fake transport."""

from __future__ import annotations

from typing import Any

import pytest

from graph_fakes import FakeTransport
from shoal.graph import tasks
from shoal.graph.attributes import ObjectInfo, TaskInfo
from shoal.graph.data_object import DataObject, blob
from shoal.graph.remote import remote
from shoal.graph.session import GraphError, Session, SessionException, active_session
from shoal.graph.task import Task

# --- sessions -------------------------------------------------------------------------


def test_session_stack(transport: FakeTransport) -> None:
    with pytest.raises(GraphError):
        active_session()
    with Session(transport) as a:
        assert active_session() is a
        with Session(transport) as b:
            assert active_session() is b
            assert blob(b"x").session is b
        assert b.is_closed and active_session() is a
    assert a.is_closed
    with pytest.raises(GraphError):
        active_session()


def test_bind_only_and_close(transport: FakeTransport) -> None:
    session = Session(transport)
    with session.bind_only():
        assert active_session() is session
        obj = blob(b"x")
    assert obj.session is session
    assert not session.is_closed
    with pytest.raises(GraphError):
        active_session()
    with session.bind_only():
        session.close()
        with pytest.raises(GraphError):
            active_session()
    session.close()
    assert transport.closed == [session.session_id]
    with pytest.raises(GraphError, match="closed"), session:
        pass
    with pytest.raises(GraphError, match="closed"):
        session.submit()


def test_default_under_stack(transport: FakeTransport) -> None:
    default = Session(transport, default=True)
    try:
        with Session(transport) as other:
            assert active_session() is other
        assert active_session() is default
    finally:
        default.close()
    assert not default.is_default


def test_keep_unkeep_fetch_rules(transport: FakeTransport, session: Session) -> None:
    a = blob(b"a")
    t = tasks.Sleep(a, 0.1)
    with pytest.raises(GraphError, match="not submitted"):
        t.output.fetch()
    t.output.keep()
    t.output.unkeep()  # before submit: only the flag
    t.output.keep()
    session.submit()
    assert transport.unkept == []
    with pytest.raises(GraphError, match="after it was submitted"):
        a.keep()
    with pytest.raises(GraphError, match="not kept"):
        a.fetch()
    a.wait()  # no keep needed to wait
    t.wait()
    assert transport.waited == [[a.id], [t.id]]
    t.output.unkeep()
    assert transport.unkept == [t.output.id]
    with pytest.raises(GraphError, match="not kept"):
        t.output.unkeep()
    with pytest.raises(GraphError, match="not kept"):
        t.output.fetch()


def test_multiple_submits(transport: FakeTransport, session: Session) -> None:
    a = blob("Hello world")
    t1 = tasks.Sleep(a, 1.0)
    t1.output.keep()
    session.submit()
    t2 = tasks.Sleep(t1.output, 1.0)
    session.submit()
    session.wait_all()
    t3 = tasks.Sleep(t1.output, 1.0)
    session.submit()
    session.wait_all()
    first, second, third = transport.submits
    assert [t.id for t in first["tasks"]] == [t1.id]
    assert [o.id for o in first["objects"]] == [a.id, t1.output.id]
    assert [t.id for t in second["tasks"]] == [t2.id]
    assert [o.id for o in second["objects"]] == [t2.output.id]
    assert second["payloads"] == {} and second["kept"] == set()
    assert [t.id for t in third["tasks"]] == [t3.id]
    assert transport.waited == [[t1.id, t2.id], [t1.id, t2.id, t3.id]]
    # An object of an earlier submit that was not kept may be used too, as in Rain:
    # the server says whether it still has it (tests/test_graph_fidelity.py).
    t4 = tasks.Sleep(a, 1.0)
    session.submit()
    assert transport.submits[-1]["tasks"][0].inputs[0].id == a.id and t4.is_submitted


def test_wait_some_and_update(transport: FakeTransport, session: Session) -> None:
    a = blob(b"a")
    t1 = tasks.Sleep(a, 1.0)
    session.submit()
    done_tasks, done_objects = session.wait_some([t1, t1.output])
    assert done_tasks == [t1] and done_objects == [t1.output]
    transport.infos[t1.id] = TaskInfo(governor="node01")
    transport.infos[t1.output.id] = ObjectInfo(size=1)
    t1.update()
    t1.output.update()
    assert t1.info is not None and t1.info.governor == "node01"
    assert t1.output.info is not None and t1.output.info.size == 1
    session.update([t1])
    with pytest.raises(GraphError, match="not submitted"):
        tasks.Sleep(a, 1.0).wait()


def test_task_user_spec(session: Session) -> None:
    @remote()
    def attr_demo(ctx: Any) -> bytes:
        return b"Result"

    task = attr_demo()
    task.spec.user["foo"] = 42
    assert task.spec.to_dict()["user"] == {"foo": 42}


def test_objects_across_sessions(transport: FakeTransport) -> None:
    with Session(transport) as s1:
        a = blob(b"a")
        with Session(transport), pytest.raises(GraphError, match="another session"):
            tasks.Sleep(a, 1.0)
        assert s1.new_objects == [a]


def test_failure_rule(transport: FakeTransport) -> None:
    session = Session(transport)
    other = Session(transport)
    with session.bind_only():
        a = blob(b"a")
        a.keep()
        t = tasks.Sleep(a, 1.0)
    session.submit()
    transport.fail = "Task (1, 2) failed: boom"
    with pytest.raises(SessionException, match="boom"):
        session.wait_all()
    transport.fail = None  # the session stays failed on the client anyway
    assert session.failed and session.error == "Task (1, 2) failed: boom"
    for access in (
        session.submit,
        session.wait_all,
        t.wait,
        t.update,
        a.fetch,
        a.unkeep,
        a.wait,
        lambda: session.wait([t]),
    ):
        with pytest.raises(SessionException, match="boom"):
            access()
    with pytest.raises(SessionException), session.bind_only():
        pass
    with pytest.raises(SessionException):
        DataObject(session=session)
    with pytest.raises(SessionException):
        Task("concat", session=session)
    session.close()  # does not raise
    session.close()
    assert session.session_id in transport.closed
    with other.bind_only():  # other sessions are not affected
        blob(b"b")
    other.submit()
    other.close()


def test_close_does_not_raise_session_exception() -> None:
    class Failing(FakeTransport):
        def close_session(self, session_id: int) -> None:
            raise SessionException("already failed")

    with Session(Failing()) as s:
        blob(b"x")
    assert s.is_closed
