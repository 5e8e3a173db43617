"""Objects of task graphs on the controller: their data, holders, freeing and movement.

A finished object lives inline on the controller (small ones, constants) or on
the nodes that made or fetched it. Objects move between agents over channels
to the object's endpoint on a holder, granted for one object, one reading node
(only one running a task that reads it) and a few seconds, signed with the
holder's own data key; an agent that cannot reach a holder goes through the
controller's channel relay (:mod:`shoal.controller.channel_relay`). A client's
fetch of an object only agents hold is read here over such a channel too.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

from shoal.channel import ChannelError
from shoal.controller.channel_relay import ChannelService, node_opener
from shoal.controller.graph_records import RecordMarks
from shoal.controller.graph_state import (
    FINISHED,
    READY,
    WAITING,
    GNode,
    GObject,
    GSession,
    GTask,
    Plan,
)
from shoal.controller.graph_submit import GraphRequestError
from shoal.controller.metrics import LatencyHistogram
from shoal.controller.registry import NodeRegistry
from shoal.graph.transfer import TransferError, read_body, read_header
from shoal.protocol import capabilities
from shoal.protocol.graph_messages import CHUNK, GraphFree, GraphHolder, object_endpoint

log = logging.getLogger("shoal.controller.graph")


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
    channels: ChannelService | None
    _frees: defaultdict[str, list[tuple[int, int]]]
    _plans: dict[GTask, Plan]  # waiting tasks' plans (graph_prefetch)
    # A running mean of the durations of tasks on any node: how far ahead to
    # feed nodes. One for all: with one per node, the node that got the first
    # short tasks learned they were short, got more of them, and the other never
    # learned it (it kept a queue of one while the first queued the whole graph).
    mean_duration: float

    def _schedule(self) -> None:
        raise NotImplementedError

    def _plan_inputs(self, task: GTask, obj: GObject) -> None:
        raise NotImplementedError

    def _forget_plans(self, session: GSession) -> None:
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
        """The key node ``name``'s channel server checks capabilities with (made on first use)."""
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
        # Held by a node: consumers still waiting for other inputs may move it
        # ahead to where they will run (graph_prefetch).
        on_node = data is None and holder is not None
        for consumer in obj.consumers:
            consumer.unfinished_inputs -= 1
            if consumer.state != WAITING:
                continue
            if consumer.unfinished_inputs == 0:
                consumer.move(READY)
                consumer.ready_at = time.monotonic()
                self.ready.append(consumer)
                if self._plans:
                    self._plans.pop(consumer, None)  # placed now: no plan needed
            elif on_node:
                self._plan_inputs(consumer, obj)

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

    def _holders(self, obj: GObject, reader: str) -> list[GraphHolder]:
        """The nodes ``reader`` may fetch ``obj`` from, each with a grant of a channel
        to that one object (only for a reader a task of it is placed on)."""
        assert self.channels is not None
        endpoint = object_endpoint(obj.session.id, obj.id)
        opener = node_opener(reader)
        return [
            GraphHolder(
                holder, self.channels.grant(opener, holder, endpoint, ttl=self.capability_ttl)
            )
            for holder in obj.holders
            if holder in self.nodes and holder != reader
        ]

    async def chunks(self, obj: GObject) -> AsyncIterator[bytes]:
        """The object's data in pieces: from the controller, or read from a holder
        over a channel."""
        if obj.data is not None:
            data = memoryview(obj.data)
            for start in range(0, max(len(data), 1), CHUNK):
                yield bytes(data[start : start + CHUNK])
            return
        assert self.channels is not None
        errors = []
        for holder in [h for h in obj.holders if h in self.registry.links]:
            try:
                channel = await self.channels.open_here(
                    holder, object_endpoint(obj.session.id, obj.id)
                )
            except ChannelError as exc:
                errors.append(str(exc))
                continue
            try:
                header = await read_header(channel)
                async for data in read_body(channel, header):
                    yield data
                await channel.close()
                return
            except (TransferError, ChannelError) as exc:
                raise GraphRequestError(
                    f"reading object ({obj.session.id}, {obj.id}) from node {holder!r} "
                    f"failed: {exc}"
                ) from None
            finally:
                await channel.aclose()
        raise GraphRequestError(
            f"no connected node holds object ({obj.session.id}, {obj.id}) now"
            + (f" ({'; '.join(errors)})" if errors else "")
        )
