"""Objects of task graphs on the controller: their data, holders, freeing and movement.

A finished object lives inline on the controller (small ones, constants) or on
the nodes that made or fetched it. Objects move between agents only with a
capability the controller signs for one object, one reading node and a few
seconds, with the holder's own data key (see :mod:`shoal.protocol.capabilities`);
an agent that cannot reach a holder gets the data relayed through here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

from shoal.controller.graph_records import RecordMarks
from shoal.controller.graph_state import FINISHED, READY, GNode, GObject, GSession, GTask
from shoal.controller.graph_submit import GraphRequestError
from shoal.controller.metrics import LatencyHistogram
from shoal.controller.registry import NodeRegistry
from shoal.protocol import capabilities
from shoal.protocol.graph_messages import (
    CHUNK,
    GraphFetch,
    GraphFree,
    GraphHolder,
    GraphUpload,
    ObjectChunk,
)

log = logging.getLogger("shoal.controller.graph")

UPLOAD_TIMEOUT = 60.0  # seconds without a chunk before a transfer is given up


class GraphCore:
    """What the parts of the graph service share: sessions, nodes, the ready
    queue, and the links to agents. The parts are mixed into
    :class:`~shoal.controller.graph_service.GraphService`."""

    registry: NodeRegistry
    sessions: dict[int, GSession]
    nodes: dict[str, GNode]
    ready: deque[GTask]
    capability_ttl: float
    tasks_ended: dict[str, int]
    placement: LatencyHistogram
    marks: RecordMarks
    _data_keys: dict[str, bytes]
    _request_ids: itertools.count[int]
    _transfers: dict[int, tuple[asyncio.Queue[ObjectChunk], str]]
    _frees: defaultdict[str, list[tuple[int, int]]]
    _tg: asyncio.TaskGroup | None

    def _schedule(self) -> None:
        raise NotImplementedError

    def _fail(
        self, session: GSession, message: str, *, task: int | None = None, debug: str = ""
    ) -> None:
        raise NotImplementedError

    def _send(self, node: str, message: Any) -> None:
        link = self.registry.links.get(node)
        if link is not None:
            link.send(message)


class ObjectKeeping(GraphCore):
    """Objects: finished, freed when nobody needs them, and moved between nodes."""

    def data_key(self, name: str) -> bytes:
        """The key node ``name``'s data server checks capabilities with (made on first use)."""
        key = self._data_keys.get(name)
        if key is None:
            key = self._data_keys[name] = capabilities.new_key()
        return key

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
        if item.waiters:
            for waiter in item.waiters:
                waiter.item_done()
            item.waiters = None

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
