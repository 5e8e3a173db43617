"""The seam between the client-side graph API and whatever executes the graph.

:class:`~shoal.graph.session.Session` builds tasks and data objects locally and
talks to the executing side only through a :class:`GraphTransport`. The execution
engine implements it (over the network, or in process); tests use an in-memory fake.

All IDs are :class:`~shoal.graph.ids.ID`. Once a session has failed (a task in it
failed), every call about that session except :meth:`GraphTransport.close_session`
raises :class:`SessionException` carrying the error that caused the failure; the
session remembers it and raises it again on every later access.

A minimal transport that accepts everything::

    class NullTransport:
        def open_session(self, name): return 1
        def submit(self, session_id, tasks, objects, payloads, kept): pass
        def wait(self, ids): pass
        def wait_some(self, ids): return list(ids), []
        def fetch(self, object_id): raise KeyError(object_id)
        def unkeep(self, ids): pass
        def update(self, ids): return {}
        def close_session(self, session_id): pass
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol, runtime_checkable

from shoal.graph.attributes import ObjectInfo, ObjectSpec, TaskInfo, TaskSpec
from shoal.graph.data_instance import DataInstance
from shoal.graph.exceptions import SessionException
from shoal.graph.ids import ID

__all__ = ["GraphTransport", "SessionException"]


@runtime_checkable
class GraphTransport(Protocol):
    """What a :class:`~shoal.graph.session.Session` needs from the executing side."""

    def open_session(self, name: str) -> int:
        """Open a new session called ``name`` (may be empty); return its session id."""
        ...

    def submit(
        self,
        session_id: int,
        tasks: Sequence[TaskSpec],
        objects: Sequence[ObjectSpec],
        payloads: Mapping[ID, bytes],
        kept: Collection[ID],
    ) -> None:
        """Add tasks and objects to the session's graph.

        ``objects`` are all objects new in this submit: task outputs and constants.
        ``payloads`` holds the data of the constants (a ``'dir'`` object's data is a
        tar archive). ``kept`` are the IDs of new objects the server must keep until
        :meth:`unkeep` or the end of the session. Task inputs may also name objects
        of earlier submits (always kept ones).
        """
        ...

    def wait(self, ids: Collection[ID]) -> None:
        """Block until every task and object in ``ids`` is finished."""
        ...

    def wait_some(self, ids: Collection[ID]) -> tuple[list[ID], list[ID]]:
        """Block until at least one of ``ids`` is finished.

        Return the finished ones among them: ``(task_ids, object_ids)``.
        """
        ...

    def fetch(self, object_id: ID) -> DataInstance:
        """Block until the (kept) object is finished; return its data with spec and info."""
        ...

    def unkeep(self, ids: Collection[ID]) -> None:
        """Drop the keep flag of the objects ``ids``; the server may free them.

        Answered, as Rain's was: raises SessionException if the session has failed."""
        ...

    def update(self, ids: Collection[ID]) -> Mapping[ID, TaskInfo | ObjectInfo]:
        """The current info of the tasks and objects ``ids`` (any, kept or not)."""
        ...

    def close_session(self, session_id: int) -> None:
        """End the session: stop its tasks, free its objects. Never raises SessionException."""
        ...
