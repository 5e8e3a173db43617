"""Task graphs on the controller: sessions, the scheduler, and object movement.

Clients submit tasks over data objects; the service keeps the graph in memory,
feeds ready tasks to agents (where most of their input data already is, within
each node's cpus, and with a queue ahead on nodes whose tasks are short),
collects results, frees objects nobody needs, and fails a session when one of
its tasks fails or a node holding its work is lost. Other sessions go on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from shoal.controller.graph_records import RecordMarks
from shoal.controller.graph_state import (
    ASSIGNED,
    FAILED,
    FINISHED,
    READY,
    WAITING,
    GNode,
    GObject,
    GSession,
    GTask,
    Waiter,
)
from shoal.controller.metrics import PLACEMENT_BUCKETS, LatencyHistogram
from shoal.controller.registry import NodeRegistry
from shoal.protocol import capabilities
from shoal.protocol.graph_messages import (
    CHUNK,
    INLINE_LIMIT,
    GraphCancel,
    GraphDone,
    GraphFetch,
    GraphFree,
    GraphHolder,
    GraphInput,
    GraphOutput,
    GraphRun,
    GraphTask,
    GraphUpload,
    ObjectChunk,
    PutData,
    Submit,
)

log = logging.getLogger("shoal.controller.graph")

UPLOAD_TIMEOUT = 60.0  # seconds without a chunk before a transfer is given up
MAX_CONSTANT = 1024 * 1024 * 1024  # bytes of one uploaded constant
CAPABILITY_TTL = 60.0  # seconds a node has to start fetching an input it was sent


class GraphRequestError(Exception):
    """A client request that cannot be done; ``str()`` says why."""

    def __init__(
        self,
        message: str,
        *,
        session_failed: bool = False,
        task: int | None = None,
        debug: str = "",
    ) -> None:
        super().__init__(message)
        self.session_failed = session_failed
        self.task = task
        self.debug = debug


def _session_error(session: GSession) -> GraphRequestError:
    return GraphRequestError(
        session.error or "the session failed",
        session_failed=True,
        task=session.error_task,
        debug=session.error_debug,
    )


class GraphService:
    """The task graphs of all users: sessions, scheduling, and object movement.

    Objects move between agents only with a capability the service signs for
    one object, one reading node and ``capability_ttl`` seconds, with the
    holder's own data key (see :mod:`shoal.protocol.capabilities`).
    """

    def __init__(self, registry: NodeRegistry, capability_ttl: float = CAPABILITY_TTL) -> None:
        self.registry = registry
        self.sessions: dict[int, GSession] = {}
        self.nodes: dict[str, GNode] = {}
        self.ready: deque[GTask] = deque()
        self.epoch = secrets.token_hex(8)
        self.capability_ttl = capability_ttl
        # Each node's data-server key, kept across reconnects (what the node was
        # told in its last Welcome).
        self._data_keys: dict[str, bytes] = {}
        self._request_ids = itertools.count(1)
        # Transfers through the controller: request id -> (queue of chunks, source node).
        self._transfers: dict[int, tuple[asyncio.Queue[ObjectChunk], str]] = {}
        self._frees: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._tg: asyncio.TaskGroup | None = None
        # Since start, for /metrics.
        self.tasks_ended: dict[str, int] = {FINISHED: 0, FAILED: 0}
        self.placement = LatencyHistogram(PLACEMENT_BUCKETS)
        # What changed in sessions that have a record; GraphRecorder writes it.
        self.marks = RecordMarks()

    async def run(self) -> None:
        """Host the background transfers (relays between agents) until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            await asyncio.Event().wait()

    # --- nodes -------------------------------------------------------------------------

    def data_key(self, name: str) -> bytes:
        """The key node ``name``'s data server checks capabilities with (made on first use)."""
        key = self._data_keys.get(name)
        if key is None:
            key = self._data_keys[name] = capabilities.new_key()
        return key

    def node_hello(self, name: str, cpus: int, data_address: str) -> None:
        """An agent (re)connected: it can take graph tasks; resend what it may have missed."""
        node = self.nodes.get(name)
        if node is None:
            self.nodes[name] = GNode(name, max(1, cpus), data_address)
        else:
            node.capacity = max(1, cpus)
            node.data_address = data_address
            # A task sent while the connection dropped may never have arrived;
            # the agent ignores the ones it already has.
            resend = [self._run_message(t) for t in node.assigned.values()]
            if resend:
                self._send(name, GraphRun(resend))
        self._schedule()

    def node_back(self, name: str) -> None:
        """A suspect node was heard again: it takes new tasks again."""
        if name in self.nodes:
            self._schedule()

    def node_lost(self, name: str, reason: str) -> None:
        """The node is gone: its running tasks and the data only it held are lost."""
        node = self.nodes.pop(name, None)
        for rid, (queue, source) in list(self._transfers.items()):
            if source == name:
                queue.put_nowait(ObjectChunk(rid, error=reason))
        if node is None:
            return
        for task in list(node.assigned.values()):
            if task.session.error is None:
                self._fail(task.session, f"{reason}, while it ran {task.describe()}")
        for session in list(self.sessions.values()):
            if session.error is not None or name not in session.nodes:
                continue
            session.nodes.discard(name)
            for obj in session.objects.values():
                if name not in obj.holders:
                    continue
                obj.holders.discard(name)
                if not obj.holders and obj.data is None and not obj.freed and obj.needed():
                    label = f" {obj.label!r}" if obj.label else ""
                    self._fail(
                        session,
                        f"{reason}; it held object{label} ({session.id}, {obj.id}), "
                        "which is still needed",
                    )
                    break
        self._schedule()

    # --- client requests ---------------------------------------------------------------

    def _session(self, owner: int, session_id: int, *, usable: bool = True) -> GSession:
        session = self.sessions.get(session_id)
        if session is None or session.owner != owner:
            raise GraphRequestError(f"no open session {session_id}")
        if usable and session.error is not None:
            raise _session_error(session)
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
        new_objects = self._check_objects(session, message)
        new_tasks = self._check_tasks(session, message, new_objects)
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

    def _check_objects(self, session: GSession, message: Submit) -> dict[int, GObject]:
        new: dict[int, GObject] = {}
        produced = {o for t in message.tasks for o in t.outputs}
        for spec in message.objects:
            if spec.id in session.objects or spec.id in session.tasks or spec.id in new:
                raise GraphRequestError(f"object id {spec.id} is already used in the session")
            if spec.data_type not in ("blob", "dir"):
                raise GraphRequestError(
                    f"object {spec.id}: data_type is 'blob' or 'dir', not {spec.data_type!r}"
                )
            if spec.content_type is not None and (
                not spec.content_type or len(spec.content_type) > 200
            ):
                raise GraphRequestError(f"object {spec.id}: bad content type {spec.content_type!r}")
            obj = GObject(
                session, spec.id, spec.label, spec.content_type, spec.data_type, dict(spec.user)
            )
            obj.keep = spec.keep
            upload = session.uploads.get(spec.id)
            if spec.id in produced:
                if spec.data is not None or upload is not None:
                    raise GraphRequestError(f"object {spec.id} has data and a task that makes it")
            else:
                if spec.data is None and upload is None:
                    raise GraphRequestError(
                        f"object {spec.id} has neither data nor a task that makes it"
                    )
                data = bytes(upload or b"") + (spec.data or b"")
                obj.data, obj.size = data, len(data)
            new[spec.id] = obj
        for spec in message.objects:
            session.uploads.pop(spec.id, None)
        return new

    def _check_tasks(
        self, session: GSession, message: Submit, new_objects: dict[int, GObject]
    ) -> list[GTask]:
        tasks: list[GTask] = []
        for spec in message.tasks:
            if spec.id in session.objects or spec.id in session.tasks or spec.id in new_objects:
                raise GraphRequestError(f"task id {spec.id} is already used in the session")
            if spec.cpus < 1:
                raise GraphRequestError(f"task {spec.id}: cpus must be at least 1")
            inputs: list[tuple[GObject, str | None]] = []
            for ref in spec.inputs:
                obj = new_objects.get(ref.id)
                if obj is None:
                    obj = session.objects.get(ref.id)
                    if obj is None:
                        raise GraphRequestError(
                            f"task {spec.id} reads object {ref.id}, which the session does not have"
                        )
                    if obj.freed:
                        raise GraphRequestError(
                            f"task {spec.id} reads object {ref.id} of an earlier submit, which "
                            "was freed: it was not kept and no task needed it any more "
                            "(keep() it before the submit that creates it)"
                        )
                inputs.append((obj, ref.label))
            outputs = []
            for oid in spec.outputs:
                obj = new_objects.get(oid)
                if obj is None:
                    raise GraphRequestError(
                        f"task {spec.id}: output {oid} must be a new object of the same submit"
                    )
                if obj.producer is not None:
                    raise GraphRequestError(f"object {oid} is an output of two tasks")
                outputs.append(obj)
            task = GTask(
                session,
                spec.id,
                spec.task_type,
                spec.config,
                inputs,
                outputs,
                spec.cpus,
                spec.name,
                dict(spec.user),
            )
            for obj in outputs:
                obj.producer = task
            tasks.append(task)
        self._check_acyclic(tasks)
        return tasks

    @staticmethod
    def _check_acyclic(tasks: list[GTask]) -> None:
        # Kahn's algorithm over the new tasks: a task whose inputs can never be
        # made (a cycle) would wait for ever.
        new = {id(t) for t in tasks}
        readers: dict[int, list[GTask]] = defaultdict(list)
        blocking: dict[int, int] = {}
        for task in tasks:
            count = 0
            for obj, _ in task.inputs:
                if obj.producer is not None and id(obj.producer) in new:
                    readers[id(obj)].append(task)
                    count += 1
            blocking[id(task)] = count
        todo = [t for t in tasks if blocking[id(t)] == 0]
        seen = 0
        while todo:
            task = todo.pop()
            seen += 1
            for out in task.outputs:
                for reader in readers.get(id(out), ()):
                    blocking[id(reader)] -= 1
                    if blocking[id(reader)] == 0:
                        todo.append(reader)
        if seen != len(tasks):
            raise GraphRequestError("the submitted tasks form a cycle")

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
            waiter = Waiter(pending, some, len(pending), asyncio.get_running_loop().create_future())
            for item in pending:
                item.waiters.append(waiter)
            session.waiters.add(waiter)
            try:
                await waiter.future
            finally:
                session.waiters.discard(waiter)
                for item in pending:
                    if waiter in item.waiters:
                        item.waiters.remove(waiter)
        if session.error is not None:
            raise _session_error(session)
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

    async def chunks(self, obj: GObject) -> AsyncIterator[bytes]:
        """The object's data in pieces: from the controller, or pulled from a holder."""
        if obj.data is not None:
            data = memoryview(obj.data)
            for start in range(0, max(len(data), 1), CHUNK):
                yield bytes(data[start : start + CHUNK])
            return
        holder = next((h for h in obj.holders if h in self.registry.links), None)
        if holder is None:
            raise GraphRequestError(
                f"no connected node holds object ({obj.session.id}, {obj.id}) now"
            )
        rid = next(self._request_ids)
        queue: asyncio.Queue[ObjectChunk] = asyncio.Queue()
        self._transfers[rid] = (queue, holder)
        try:
            self._send(holder, GraphUpload(rid, obj.session.id, obj.id))
            while True:
                try:
                    chunk = await asyncio.wait_for(queue.get(), UPLOAD_TIMEOUT)
                except TimeoutError:
                    raise GraphRequestError(
                        f"node {holder!r} stopped sending object ({obj.session.id}, {obj.id})"
                    ) from None
                if chunk.error:
                    raise GraphRequestError(chunk.error)
                yield chunk.data
                if chunk.last:
                    return
        finally:
            del self._transfers[rid]

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
                tasks[item.id] = dict(item.info)
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

    def running(self) -> Iterator[GTask]:
        """The tasks assigned to nodes now (running, or queued there)."""
        for node in self.nodes.values():
            yield from node.assigned.values()

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

    # --- agents ------------------------------------------------------------------------

    def on_done(self, node_name: str, message: GraphDone) -> None:
        node = self.nodes.get(node_name)
        now = time.time()
        marks = self.marks
        for result in message.results:
            session = self.sessions.get(result.session)
            task = session.tasks.get(result.id) if session is not None else None
            if task is not None and task.node is not None and task.node != node_name:
                # Believed only from the node the task was placed on; nothing is freed
                # on the sender either: what it claims to hold is not its to free.
                log.warning(
                    "dropped a result of graph task (%d, %d) from node %r: "
                    "it was placed on node %r",
                    result.session,
                    result.id,
                    node_name,
                    task.node,
                )
                continue
            if (
                node is None
                or task is None
                or node.assigned.pop((result.session, result.id), None) is None
            ):
                # A task of a closed or failed session, or a duplicate: drop its data.
                stored = [(result.session, o.id) for o in result.outputs if o.data is None]
                if stored:
                    self._frees[node_name].extend(stored)
                continue
            node.used -= task.cpus
            duration = result.info.get("duration")
            if isinstance(duration, int | float):
                node.mean_duration = 0.8 * node.mean_duration + 0.2 * float(duration)
            info = dict(result.info)
            # Rain's governor was its address (host:port); the node's name is beside it.
            info["governor"] = node.data_address or node_name
            info["node"] = node_name
            task.finished_at = now
            if task.session.record_id is not None:
                marks.tasks.add(task)
                marks.objects.update(task.outputs)
            if result.error:
                info["error"] = result.error
                task.info = info
                task.move(FAILED)
                self.tasks_ended[FAILED] += 1
                for obj in task.outputs:
                    obj.state = FAILED
                    obj.info = {"error": f"{task.describe()} failed"}
                self._wake(task)
                self._fail(
                    task.session,
                    f"{task.describe()} failed on node {node_name!r}: {result.error}",
                    task=task.id,
                    debug=str(info.get("debug", "")),
                )
                continue
            task.info = info
            task.move(FINISHED)
            self.tasks_ended[FINISHED] += 1
            outputs = {o.id: o for o in result.outputs}
            for obj in task.outputs:
                out = outputs.get(obj.id)
                if out is None:
                    continue
                self._finish_object(obj, out.size, out.content_type, out.data, node_name)
            self._wake(task)
            for obj, _label in task.inputs:
                obj.unfinished_consumers -= 1
                self._maybe_free(obj)
            for obj in task.outputs:
                self._maybe_free(obj)
        self._flush_frees()
        self._schedule()

    def on_fetch(self, node_name: str, message: GraphFetch) -> None:
        """Relay an object to an agent that could not reach its holders directly,
        if a task placed on that node takes it as input."""
        assert self._tg is not None
        node = self.nodes.get(node_name)
        needs = node is not None and any(
            task.session.id == message.session
            and any(obj.id == message.object for obj, _ in task.inputs)
            for task in node.assigned.values()
        )
        if not needs:
            log.warning(
                "refused node %r object (%d, %d): no task placed on it takes that input",
                node_name,
                message.session,
                message.object,
            )
            self._send(node_name, ObjectChunk(message.request, last=True, error="no such object"))
            return
        self._tg.create_task(self._relay(node_name, message))

    async def _relay(self, node_name: str, message: GraphFetch) -> None:
        session = self.sessions.get(message.session)
        obj = session.objects.get(message.object) if session is not None else None
        node = self.nodes.get(node_name)
        # Only for a task placed on that node that reads the object: a node gets
        # no other user's data by asking.
        wanted = node is not None and any(
            key[0] == message.session and any(o is obj for o, _ in task.inputs)
            for key, task in node.assigned.items()
        )
        if obj is None or obj.freed or not wanted:
            self._send(node_name, ObjectChunk(message.request, last=True, error="no such object"))
            return
        try:
            async for data in self.chunks(obj):
                self._send(node_name, ObjectChunk(message.request, data=data))
        except GraphRequestError as exc:
            self._send(node_name, ObjectChunk(message.request, last=True, error=str(exc)))
            return
        self._send(node_name, ObjectChunk(message.request, last=True))

    def on_chunk(self, node_name: str, message: ObjectChunk) -> None:
        """A piece of an object we asked ``node_name`` for; from anyone else, dropped."""
        transfer = self._transfers.get(message.request)
        if transfer is None:
            return
        queue, holder = transfer
        if holder != node_name:
            log.warning(
                "dropped object data for request %d from node %r: it was asked of node %r",
                message.request,
                node_name,
                holder,
            )
            return
        queue.put_nowait(message)

    # --- internals ---------------------------------------------------------------------

    def _finish_object(
        self,
        obj: GObject,
        size: int,
        content_type: str | None,
        data: bytes | None,
        holder: str | None,
    ) -> None:
        obj.state = FINISHED
        obj.size = size
        obj.info = {"size": size}
        if content_type is not None:
            obj.info["content_type"] = content_type
        if data is not None:
            obj.data = data
        elif holder is not None:
            obj.holders.add(holder)
            obj.session.nodes.add(holder)
        self._wake(obj)
        for consumer in obj.consumers:
            consumer.unfinished_inputs -= 1
            if consumer.unfinished_inputs == 0 and consumer.state == "waiting":
                consumer.move(READY)
                consumer.ready_at = time.monotonic()
                self.ready.append(consumer)

    @staticmethod
    def _wake(item: GTask | GObject) -> None:
        for waiter in item.waiters:
            waiter.item_done()
        item.waiters.clear()

    def _maybe_free(self, obj: GObject) -> None:
        if obj.done and not obj.freed and not obj.needed():
            obj.freed = True
            obj.data = None
            for holder in obj.holders:
                self._frees[holder].append((obj.session.id, obj.id))
            obj.holders.clear()

    def _flush_frees(self) -> None:
        for name, objects in self._frees.items():
            if objects:
                self._send(name, GraphFree(objects))
        self._frees.clear()

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

    def _send(self, node: str, message: Any) -> None:
        link = self.registry.links.get(node)
        if link is not None:
            link.send(message)

    def _holders(self, obj: GObject, reader: str, expires: float) -> list[GraphHolder]:
        return [
            GraphHolder(
                node=holder,
                address=self.nodes[holder].data_address,
                capability=capabilities.sign(
                    self.data_key(holder), obj.session.id, obj.id, reader, expires
                ),
                expires=expires,
            )
            for holder in obj.holders
            if holder in self.nodes and holder != reader
        ]

    def _run_message(self, task: GTask) -> GraphTask:
        inputs = []
        reader = task.node or ""
        expires = round(time.time() + self.capability_ttl, 3)
        for obj, label in task.inputs:
            inline = obj.data is not None and obj.size <= INLINE_LIMIT
            inputs.append(
                GraphInput(
                    id=obj.id,
                    label=label,
                    data_type=obj.data_type,
                    content_type=obj.info.get("content_type", obj.content_type),
                    size=obj.size,
                    data=obj.data if inline else None,
                    holders=[] if inline else self._holders(obj, reader, expires),
                    user=obj.user,
                )
            )
        return GraphTask(
            session=task.session.id,
            id=task.id,
            task_type=task.task_type,
            config=task.config,
            inputs=inputs,
            outputs=[GraphOutput(o.id, o.label, o.data_type, o.content_type) for o in task.outputs],
            name=task.name,
            cpus=task.cpus,
            user=task.user,
            owner=task.session.login,
        )

    def _place(self, task: GTask, online: list[GNode], now: float) -> GNode | None:
        """The node for a ready task, or None while every node is full.

        A node with free cpus beats one where the task would queue behind others
        (a queue ahead only pays for short tasks, and durations are not known in
        advance); among those, the node that holds most of the input bytes, then
        the least loaded.
        """
        best: GNode | None = None
        best_score: tuple[bool, int, float] | None = None
        for node in online:
            if task.cpus > node.capacity:
                continue
            free = node.used + task.cpus <= node.capacity or node.used == 0
            if not free and node.used + task.cpus > node.window(now):
                continue
            local = sum(obj.size for obj, _ in task.inputs if node.name in obj.holders)
            score = (free, local, -node.used / node.capacity)
            if best_score is None or score > best_score:
                best, best_score = node, score
        return best

    def _schedule(self) -> None:
        if not self.ready:
            return  # nothing to place: not worth a pass over every node (each hello calls this)
        runs: dict[str, list[GraphTask]] = defaultdict(list)
        now = time.monotonic()
        wall = time.time()
        linked = [n for n in self.nodes.values() if n.name in self.registry.links]
        largest = max((n.capacity for n in linked), default=0)
        # A suspect node (silent past the heartbeat timeout) gets no new work until
        # it is heard again; its size still counts, as it may come back.
        online = [n for n in linked if self.registry.is_online(n.name)]
        while self.ready:
            task = self.ready[0]
            if task.state != READY or task.session.error is not None or task.session.closed:
                self.ready.popleft()
                continue
            if linked and task.cpus > largest:
                self.ready.popleft()
                task.move(FAILED)
                self.tasks_ended[FAILED] += 1
                task.info = {"error": "no node has enough cpus"}
                if task.session.record_id is not None:
                    self.marks.tasks.add(task)
                self._wake(task)
                self._fail(
                    task.session,
                    f"{task.describe()} needs {task.cpus} cpus, but the largest node has {largest}",
                    task=task.id,
                )
                continue
            node = self._place(task, online, now)
            if node is None:
                break
            self.ready.popleft()
            self.placement.observe(now - task.ready_at)
            task.move(ASSIGNED)
            task.assigned_at = now
            task.started_at = wall
            task.node = node.name
            node.used += task.cpus
            node.assigned[(task.session.id, task.id)] = task
            task.session.nodes.add(node.name)
            runs[node.name].append(self._run_message(task))
        for name, tasks in runs.items():
            self._send(name, GraphRun(tasks))
