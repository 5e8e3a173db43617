"""Graph sessions on the controller: what a client asks of its sessions.

A session is opened, given tasks and objects (all or nothing), waited on,
fetched from, and closed, failed or cancelled; its end stops its work on every
node and frees its data.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from shoal.controller.graph_objects import ObjectKeeping
from shoal.controller.graph_state import (
    FINISHED,
    READY,
    WAITING,
    GObject,
    GraphWaiter,
    GSession,
    GTask,
)
from shoal.controller.graph_submit import (
    MAX_CONSTANT,
    GraphRequestError,
    add_functions,
    check_objects,
    check_tasks,
    session_error,
)
from shoal.protocol.graph_messages import GraphCancel, PutData, Submit

log = logging.getLogger("shoal.controller.graph")


class SessionLifecycle(ObjectKeeping):
    """Client requests on sessions, and how a session ends."""

    def _session(self, owner: int, session_id: int, *, usable: bool = True) -> GSession:
        session = self.sessions.get(session_id)
        if session is None or session.owner != owner:
            raise GraphRequestError(f"no open session {session_id}")
        if usable and session.error is not None:
            raise session_error(session)
        return session

    def open_session(self, owner: int, name: str, login: str = "") -> int:
        """A new session of user ``owner`` (``login`` names the user on the nodes)."""
        # Random, not counted: a session's objects are not found by guessing.
        sid = secrets.randbits(63)
        while sid == 0 or sid in self.sessions:
            sid = secrets.randbits(63)
        session = GSession(sid, owner, name, login=login)
        self.sessions[session.id] = session
        log.info("session %d %r opened", session.id, name)
        return session.id

    def put_data(self, owner: int, message: PutData) -> None:
        session = self._session(owner, message.session)
        buffer = session.uploads.setdefault(message.object, bytearray())
        if len(buffer) + len(message.data) > MAX_CONSTANT:
            session.uploads.pop(message.object, None)
            raise GraphRequestError(f"constant {message.object} is over {MAX_CONSTANT} bytes")
        buffer += message.data

    def submit(self, owner: int, message: Submit) -> None:
        """Add tasks and objects to a session's graph, all or nothing."""
        session = self._session(owner, message.session)
        add_functions(session, message)
        new_objects = check_objects(session, message)
        new_tasks = check_tasks(session, message, new_objects)
        # Everything is valid: from here on nothing raises.
        for obj in new_objects.values():
            session.objects[obj.id] = obj
            if obj.producer is None:
                self._finish_object(obj, obj.size, obj.content_type, obj.data, None)
        now = time.monotonic()
        session.task_counts[WAITING] += len(new_tasks)
        for task in new_tasks:
            session.tasks[task.id] = task
            for obj, _label in task.inputs:
                obj.consumers.append(task)
                obj.unfinished_consumers += 1
                if not obj.done:
                    task.unfinished_inputs += 1
            if task.unfinished_inputs == 0:
                task.move(READY)
                task.ready_at = now
                self.ready.append(task)
        for obj in new_objects.values():
            self._maybe_free(obj)
        if session.record_id is not None:
            # Objects a task makes are recorded once, when it ends; constants now.
            self.marks.tasks.update(new_tasks)
            self.marks.objects.update(o for o in new_objects.values() if o.producer is None)
        self._flush_frees()
        self._schedule()

    def _items(self, session: GSession, ids: list[int]) -> list[GTask | GObject]:
        items: list[GTask | GObject] = []
        for i in ids:
            item = session.tasks.get(i) or session.objects.get(i)
            if item is None:
                raise GraphRequestError(f"the session has no task or object {i}")
            items.append(item)
        return items

    async def wait(self, owner: int, session_id: int, ids: list[int], some: bool) -> list[Any]:
        """Wait for all (or some) of ``ids``; return the finished ones."""
        session = self._session(owner, session_id)
        items = self._items(session, ids)
        pending = [item for item in items if not item.done]
        if pending and not (some and len(pending) < len(items)):
            waiter = GraphWaiter(
                pending, some, len(pending), asyncio.get_running_loop().create_future()
            )
            for item in pending:
                if item.waiters is None:
                    item.waiters = []
                item.waiters.append(waiter)
            session.waiters.add(waiter)
            try:
                await waiter.future
            finally:
                session.waiters.discard(waiter)
                for item in pending:
                    if item.waiters and waiter in item.waiters:
                        item.waiters.remove(waiter)
        if session.error is not None:
            raise session_error(session)
        if session.closed:
            raise GraphRequestError(f"session {session.id} was closed")
        return [item for item in items if item.done]

    async def fetch(self, owner: int, session_id: int, object_id: int) -> GObject:
        """The finished, kept object (waits for it); its data come from ``chunks()``."""
        session = self._session(owner, session_id)
        obj = session.objects.get(object_id)
        if obj is None:
            raise GraphRequestError(f"the session has no object {object_id}")
        if not obj.keep:
            raise GraphRequestError(
                f"object {object_id} is not kept; call keep() on it before submit to fetch it"
            )
        await self.wait(owner, session_id, [object_id], False)
        if obj.state != FINISHED or obj.freed:
            raise GraphRequestError(f"object {object_id} has no data: {obj.info.get('error')}")
        return obj

    def unkeep(self, owner: int, session_id: int, ids: list[int]) -> None:
        session = self._session(owner, session_id)
        objects = [session.objects.get(i) for i in ids]
        for i, obj in zip(ids, objects, strict=True):
            if obj is None:
                raise GraphRequestError(f"the session has no object {i}")
        for obj in objects:
            assert obj is not None
            obj.keep = False
            self._maybe_free(obj)
        self._flush_frees()

    def infos(
        self, owner: int, session_id: int, ids: list[int]
    ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        # A failed session answers with its error, as every other call does (Rain's rule).
        session = self._session(owner, session_id)
        tasks, objects = {}, {}
        for item in self._items(session, ids):
            if isinstance(item, GTask):
                node = self.nodes.get(item.node) if item.node is not None else None
                tasks[item.id] = item.full_info(node.data_address if node is not None else None)
            else:
                objects[item.id] = dict(item.info)
        return tasks, objects

    def close_session(self, owner: int, session_id: int) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.owner != owner:
            return
        self._end(session)
        session.closed = True
        self.marks.end(session)
        del self.sessions[session_id]
        self._schedule()  # its cpus are free for the others
        log.info("session %d closed", session_id)

    def cancel_record(self, record_id: str, reason: str) -> bool:
        """Cancel the open session recorded as ``record_id``: it fails with ``reason``
        (its client hears it at its next call). False if no such session is open."""
        session = next((s for s in self.sessions.values() if s.record_id == record_id), None)
        if session is None:
            return False
        if session.error is None:
            session.cancelled = reason
            self._fail(session, reason)
            self._schedule()
        return True

    def close_all(self, owner: int, session_ids: set[int]) -> None:
        """A client went away: end the sessions it opened."""
        for sid in session_ids:
            self.close_session(owner, sid)

    def _fail(
        self, session: GSession, message: str, *, task: int | None = None, debug: str = ""
    ) -> None:
        if session.error is not None:
            return
        log.info("session %d failed: %s", session.id, message)
        session.error = message
        session.error_task = task
        session.error_debug = debug
        self._end(session)
        self.marks.end(session)

    def _end(self, session: GSession) -> None:
        """Stop the session's work everywhere and free its data; wake its waiters."""
        for node in self.nodes.values():
            for key in [k for k in node.assigned if k[0] == session.id]:
                node.used -= node.assigned.pop(key).cpus
        self._forget_plans(session)
        for name in session.nodes:
            self._send(name, GraphCancel(session.id))
        session.nodes.clear()
        for obj in session.objects.values():
            obj.freed = True
            obj.data = None
            obj.holders.clear()
        session.uploads.clear()
        for waiter in list(session.waiters):
            if not waiter.future.done():
                waiter.future.set_result(None)
