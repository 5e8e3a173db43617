"""Sessions: the scopes in which task graphs are built and submitted.

Tasks and data objects are created in the *active* session: the top of a global
stack (``with session:`` pushes and, at the end, pops and closes it;
``with session.bind_only():`` pushes and pops without closing), or, when the stack
is empty, the default session (``Session(..., default=True)``).

>>> from shoal.graph.session import Session, get_active_session
>>> class Fake:  # a transport that accepts everything
...     def open_session(self, name): return 1
...     def submit(self, session_id, tasks, objects, payloads, kept): pass
...     def close_session(self, session_id): pass
>>> with Session(Fake()) as s:
...     get_active_session() is s
True
>>> s.is_closed
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from shoal.graph.data_instance import DataInstance
from shoal.graph.exceptions import RainException
from shoal.graph.ids import ID
from shoal.graph.states import DataObjectState, TaskState
from shoal.graph.transport import GraphTransport, SessionException

if TYPE_CHECKING:
    from shoal.graph.client import Client
    from shoal.graph.data_object import DataObject
    from shoal.graph.task import Task

__all__ = ["GraphError", "Session", "SessionException", "active_session", "get_active_session"]

R = TypeVar("R")

_stack: list[Session] = []
_default: Session | None = None


class GraphError(RainException, RuntimeError):
    """A task graph is used against the rules (keep after submit, fetch of an unkept
    object, no active session, ...): Rain raised its ``RainException`` for these, and
    this is one."""


def get_active_session() -> Session:
    """The session new tasks and objects go to: the top of the stack, else the default.

    Raises :class:`GraphError` when there is neither.
    """
    if _stack:
        return _stack[-1]
    if _default is not None:
        return _default
    raise GraphError(
        "no active session: create tasks and objects inside 'with session:' or "
        "'with session.bind_only():', or make a default session"
    )


active_session = get_active_session  # shoal's first name for it


class Session:
    """A graph of tasks and objects that is submitted, in parts, to a transport.

    ``Session(transport, name="My session", default=True)`` opens the session on the
    transport right away. See the module docs for the active-session rules.
    ``client`` is the :class:`~shoal.graph.client.Client` that made the session
    (Rain's ``session.client``), ``None`` for one made on a transport directly.
    """

    def __init__(
        self,
        transport: GraphTransport,
        name: str = "",
        *,
        default: bool = False,
        client: Client | None = None,
    ):
        self.transport = transport
        self.client = client
        self.name = name
        self.session_id: int = transport.open_session(name)
        self._next_id = 1
        self._closed = False
        self._error: SessionException | None = None
        self._new_tasks: list[Task] = []
        self._new_objects: list[DataObject] = []
        self._submitted_tasks: list[Task] = []
        self._submitted_objects: list[DataObject] = []
        self.submit_count = 0
        self._entered = 0  # depth of 'with session:' blocks, nested ones included
        if default:
            self.set_default()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "failed" if self._error is not None else "open"
        return f"<Session {self.session_id} {self.name!r} {state}>"

    # --- the stack --------------------------------------------------------------------

    def __enter__(self) -> Session:
        self._check_open()
        _stack.append(self)
        self._entered += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._pop()
        self._entered -= 1
        # A 'with s:' inside another 'with s:' only binds: the outer block closes.
        if self._entered <= 0:
            self.close()

    @contextlib.contextmanager
    def bind_only(self) -> Iterator[Session]:
        """Make the session active inside a ``with`` block without closing it at the end.

        >>> # session = Session(transport)
        >>> # with session.bind_only():
        >>> #     blob(b"data")      # goes to `session`, which stays open afterwards
        """
        self._check_open()
        _stack.append(self)
        try:
            yield self
        finally:
            self._pop()

    def _pop(self) -> None:
        for i in range(len(_stack) - 1, -1, -1):
            if _stack[i] is self:
                del _stack[i]
                return

    def set_default(self) -> None:
        """Use this session when no session is bound (handy interactively)."""
        global _default
        self._check_open()
        _default = self

    @property
    def is_default(self) -> bool:
        """Whether this is the default session."""
        return _default is self

    def close(self) -> None:
        """Close the session for good: remove it from the stack and end it on the server.

        Closing twice is harmless, and closing never raises :class:`SessionException`.
        """
        global _default
        if self._closed:
            return
        self._closed = True
        _stack[:] = [s for s in _stack if s is not self]
        if _default is self:
            _default = None
        with contextlib.suppress(SessionException):
            self.transport.close_session(self.session_id)

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def active(self) -> bool:
        """Rain's name: whether the session is still open on the server (not closed)."""
        return not self._closed

    @property
    def task_count(self) -> int:
        """The number of tasks not submitted yet."""
        return len(self._new_tasks)

    @property
    def dataobj_count(self) -> int:
        """The number of data objects not submitted yet."""
        return len(self._new_objects)

    # --- failure ----------------------------------------------------------------------

    @property
    def failed(self) -> bool:
        """Whether the session failed (then every access raises SessionException)."""
        return self._error is not None

    @property
    def error(self) -> str | None:
        """The error that made the session fail, or None."""
        return None if self._error is None else str(self._error)

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._again(self._error)
        if self._closed:
            raise GraphError(f"session {self.session_id} is closed")

    @staticmethod
    def _again(error: SessionException) -> SessionException:
        # A fresh exception each time: one raised object collects tracebacks.
        from shoal.graph.exceptions import TaskException

        if isinstance(error, TaskException):
            return TaskException(str(error), task_id=error.task_id, debug=error.debug)
        return SessionException(str(error))

    def _call(self, fn: Callable[..., R], *args: Any) -> R:
        self._check_open()
        try:
            return fn(*args)
        except SessionException as exc:
            self._error = self._explain(exc)
            self._mark_failed(self._error)
            raise self._again(self._error) from None

    def _mark_failed(self, error: SessionException) -> None:
        from shoal.graph.exceptions import TaskException

        if isinstance(error, TaskException) and error.task_id is not None:
            for task in self._submitted_tasks:
                if task.id == error.task_id:
                    task._state = TaskState.failed
                    break

    def _explain(self, exc: SessionException) -> SessionException:
        """Add what only the client knows to a task failure: where the task was made."""
        from shoal.graph.exceptions import TaskException

        if not isinstance(exc, TaskException) or exc.task_id is None:
            return exc
        task = next((t for t in self._submitted_tasks if t.id == exc.task_id), None)
        text = str(exc)
        if task is not None and task.created_at:
            text += f"\n  (the task was created at {task.created_at})"
        if exc.debug:
            text += f"\n\nDebug:\n{exc.debug}"
        return TaskException(text, task_id=exc.task_id, debug=exc.debug)

    # --- graph building (used by DataObject and Task) ---------------------------------

    def new_id(self) -> ID:
        """A fresh ID in this session."""
        self._check_open()
        oid = ID(self.session_id, self._next_id)
        self._next_id += 1
        return oid

    def _register_object(self, obj: DataObject) -> None:
        self._check_open()
        self._new_objects.append(obj)

    def _discard(self, objects: Iterable[DataObject]) -> None:
        drop = {
            id(o)
            for o in objects
            if not o.is_submitted and o.producer is None and o.payload is None
        }
        self._new_objects = [o for o in self._new_objects if id(o) not in drop]

    def _register_task(self, task: Task) -> None:
        self._check_open()
        self._new_tasks.append(task)

    @property
    def new_tasks(self) -> list[Task]:
        """Tasks created since the last submit."""
        return list(self._new_tasks)

    @property
    def new_objects(self) -> list[DataObject]:
        """Objects created since the last submit."""
        return list(self._new_objects)

    def keep_all(self) -> None:
        """``keep()`` every object not submitted yet."""
        for obj in self._new_objects:
            obj.keep()

    # --- submit -----------------------------------------------------------------------

    def submit(self) -> None:
        """Send the tasks and objects created since the last submit.

        A task may read an object of an earlier submit, as in Rain. A kept one is
        always there; one that is not kept is there until the server frees it (once
        it is made and no task of its submits needs it), and a submit that names a
        freed object fails, naming it.
        """
        self._check_open()
        for task in self._new_tasks:
            for obj in task._inputs:
                if obj.session is not self:
                    raise GraphError(f"{task!r} uses {obj!r} of another session")
        for obj in self._new_objects:
            if obj.producer is None and obj.payload is None:
                raise GraphError(f"{obj!r} has neither data nor a task that makes it")
        tasks, objects = self._new_tasks, self._new_objects
        self._call(
            self.transport.submit,
            self.session_id,
            [t.spec for t in tasks],
            [o.spec for o in objects],
            {o.id: o.payload for o in objects if o.payload is not None},
            {o.id for o in objects if o.is_kept()},
        )
        for t in tasks:
            t._submitted = True
            t._state = TaskState.notAssigned
        for o in objects:
            o._submitted = True
            o._state = DataObjectState.unfinished
        self._submitted_tasks += tasks
        self._submitted_objects += objects
        self._new_tasks, self._new_objects = [], []
        self.submit_count += 1

    # --- after submit -----------------------------------------------------------------

    def _ids(self, items: Iterable[Task | DataObject], what: str) -> list[ID]:
        ids = []
        for item in items:
            if item.session is not self:
                raise GraphError(f"{item!r} is not in {self!r}")
            if not item.is_submitted:
                raise GraphError(f"cannot {what} {item!r}: it is not submitted yet")
            ids.append(item.id)
        return ids

    def wait(self, items: Iterable[Task | DataObject]) -> None:
        """Block until all the given tasks and objects are finished (no keep needed)."""
        self._check_open()
        items = list(items)
        self._call(self.transport.wait, self._ids(items, "wait for"))
        self._mark_finished(items)

    @staticmethod
    def _mark_finished(items: Iterable[Task | DataObject]) -> None:
        from shoal.graph.task import Task

        for item in items:
            item._state = TaskState.finished if isinstance(item, Task) else DataObjectState.finished

    def wait_some(self, items: Iterable[Task | DataObject]) -> tuple[list[Task], list[DataObject]]:
        """Block until some of ``items`` are finished; return the finished tasks and objects."""
        self._check_open()
        items = list(items)
        by_id = {item.id: item for item in items}
        task_ids, object_ids = self._call(self.transport.wait_some, self._ids(items, "wait for"))
        done_tasks = [by_id[i] for i in task_ids]
        done_objects = [by_id[i] for i in object_ids]
        self._mark_finished(done_tasks + done_objects)
        return done_tasks, done_objects  # type: ignore[return-value]

    def wait_all(self) -> None:
        """Block until every submitted task is finished, whichever submit it came in."""
        self._check_open()
        self._call(self.transport.wait, [t.id for t in self._submitted_tasks])
        self._mark_finished(self._submitted_tasks)

    def fetch(self, obj: DataObject) -> DataInstance:
        """The data of a kept, submitted object (waits for it); updates ``obj.info``."""
        self._check_open()
        (oid,) = self._ids([obj], "fetch")
        if not obj.is_kept():
            raise GraphError(f"cannot fetch {obj!r}: it is not kept (call keep() before submit)")
        instance = self._call(self.transport.fetch, oid)
        obj.info = instance.info
        return instance

    def unkeep(self, objects: Iterable[DataObject]) -> None:
        """Drop the keep flag of the objects; submitted ones are unkept on the server now."""
        self._check_open()
        objects = list(objects)
        for obj in objects:
            if not obj.is_kept():
                raise GraphError(f"cannot unkeep {obj!r}: it is not kept")
        submitted = self._ids([o for o in objects if o.is_submitted], "unkeep")
        if submitted:
            self._call(self.transport.unkeep, submitted)
        for obj in objects:
            obj._keep = False

    def update(self, items: Iterable[Task | DataObject]) -> None:
        """Download the current ``info`` of the given tasks and objects."""
        self._check_open()
        items = list(items)
        infos = self._call(self.transport.update, self._ids(items, "update"))
        for item in items:
            info = infos.get(item.id)
            if info is not None:
                item.info = info  # type: ignore[assignment]
                item._state_from_info()
