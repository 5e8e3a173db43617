"""The graph gateway's frame sink, one piece on its own: what it answers where a
frame is read, what it leaves queued, and what it does on a fault of its own.
(The whole path, through a real controller, is what every other graph test runs.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.controller.graph_gateway import GraphGateway, _Connection
from shoal.controller.graph_service import GraphRequestError
from shoal.protocol import FrameDecoder, FrameEncoder
from shoal.protocol.graph_messages import (
    RequestDone,
    RequestFailed,
    Submit,
    Unkeep,
    Wait,
)

pytestmark = pytest.mark.timeout(30)


class Graphs:
    """Records what the gateway asked of the graph service; fails as told."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, int]] = []

    def submit(self, owner: int, request: Submit) -> None:
        self.calls.append(("submit", request.req))
        if self.fail is not None:
            raise self.fail

    def unkeep(self, owner: int, session: int, ids: list[int]) -> None:
        self.calls.append(("unkeep", session))


def connection(graphs: Graphs) -> tuple[_Connection, list[object]]:
    gateway = GraphGateway(auth=None, graphs=graphs)  # type: ignore[arg-type]
    conn = _Connection(gateway, ws=None, owner=1, login="ada")  # type: ignore[arg-type]
    sent: list[object] = []
    decoder: FrameDecoder[Any] = FrameDecoder(RequestDone | RequestFailed)

    def write(data: bytes) -> bool:
        sent.extend(decoder.decode(data))
        return True

    conn.write = write
    return conn, sent


def frame(*requests: object) -> bytes:
    return FrameEncoder().encode(list(requests))


def test_quick_requests_are_answered_where_the_frame_was_read() -> None:
    async def run() -> None:
        graphs = Graphs()
        conn, sent = connection(graphs)
        assert conn.take(frame(Submit(1, 7, quiet=True), Submit(2, 7), Unkeep(3, 7, [1])))
        assert graphs.calls == [("submit", 1), ("submit", 2), ("unkeep", 7)]
        assert sent == [RequestDone(2), RequestDone(3)]  # the quiet submit has no answer
        assert conn.queue.empty()

    asyncio.run(run())


def test_a_refused_request_is_answered_with_its_reason() -> None:
    async def run() -> None:
        conn, sent = connection(Graphs(fail=GraphRequestError("no open session 7")))
        assert conn.take(frame(Submit(4, 7)))
        assert len(sent) == 1 and isinstance(sent[0], RequestFailed)
        assert sent[0].req == 4 and "no open session 7" in sent[0].message

    asyncio.run(run())


def test_what_follows_a_request_that_waits_is_queued_behind_it_in_order() -> None:
    async def run() -> None:
        graphs = Graphs()
        conn, sent = connection(graphs)
        assert conn.take(frame(Wait(1, 7, [1]), Submit(2, 7), Unkeep(3, 7, [1])))
        assert graphs.calls == [] and sent == []
        queued = [conn.queue.get_nowait() for _ in range(3)]
        assert [r.req for r in queued] == [1, 2, 3]  # type: ignore[attr-defined]

    asyncio.run(run())


def test_a_client_that_does_not_read_its_answers_gets_them_in_turn() -> None:
    # Answered in the sink, they would pile up in the controller's write buffer;
    # queued, the processor sends each when the client takes it.
    async def run() -> None:
        graphs = Graphs()
        conn, sent = connection(graphs)
        conn.writable = lambda: False
        assert conn.take(frame(Submit(1, 7), Unkeep(2, 7, [1])))
        assert graphs.calls == [] and sent == []
        assert [conn.queue.get_nowait().req for _ in range(2)] == [1, 2]  # type: ignore[attr-defined]

    asyncio.run(run())


def test_a_frame_that_does_not_decode_is_left_to_the_usual_path() -> None:
    async def run() -> None:
        conn, sent = connection(Graphs())
        assert not conn.take(b"\xc1not msgpack")
        assert sent == [] and conn.queue.empty()

    asyncio.run(run())


def test_a_fault_of_the_gateway_ends_the_connection_without_handling_twice() -> None:
    async def run() -> None:
        graphs = Graphs(fail=KeyError("a bug"))
        conn, sent = connection(graphs)
        # Taken (True): the usual path must not run the half-done submit again.
        assert conn.take(frame(Submit(1, 7), Unkeep(2, 7, [1])))
        assert graphs.calls == [("submit", 1)] and sent == []
        with pytest.raises(KeyError, match="a bug"):
            await conn.process()

    asyncio.run(run())
