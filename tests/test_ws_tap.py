"""The controller's tapped WebSocket protocol (shoal.controller.ws_protocol), as a
unit: bytes in through a transport, and what the sink and the ASGI endpoint get.

Heartbeats end up in the sink without the generic parser only when a read holds
one whole frame at a frame boundary; every other read must give the same
messages, in the same order, as uvicorn's own protocol.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import msgspec
import uvicorn
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from shoal.controller.links import Link
from shoal.controller.ws_protocol import TAP, TappedWebSocketProtocol

HANDSHAKE = (
    b"GET /api/agents/ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
    + base64.b64encode(os.urandom(16))
    + b"\r\n\r\n"
)


class _Transport(asyncio.Transport):
    """What the protocol writes goes nowhere; reading is only flagged."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 9) if name in ("sockname", "peername") else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def frame(payload: bytes, opcode: Opcode = Opcode.BINARY, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=True, extensions=[])


class _Peer:
    """A protocol with its endpoint accepted and a sink that takes what ``accept`` allows."""

    def __init__(self, accept: Any = lambda message: True) -> None:
        self.taken: list[bytes] = []
        self.accept = accept
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        config = uvicorn.Config(
            self.app, ws=TappedWebSocketProtocol, interface="asgi3", log_level="warning"
        )
        config.load()
        self.proto = TappedWebSocketProtocol(config, ServerState(), {})
        self.transport = _Transport()
        self.proto.connection_made(self.transport)

    def sink(self, message: bytes) -> bool:
        if self.accept(message):
            self.taken.append(bytes(message))
            return True
        return False

    async def app(self, scope: dict, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        scope["extensions"][TAP].sink = self.sink
        self.ready.set()
        await self.done.wait()
        await send({"type": "websocket.close", "code": 1000})

    async def open(self) -> None:
        self.proto.data_received(HANDSHAKE)
        await asyncio.wait_for(self.ready.wait(), 5)

    def queued(self) -> list[bytes]:
        """What the endpoint would receive, in order (the ASGI path)."""
        out = []
        while not self.proto.queue.empty():
            event = self.proto.queue.get_nowait()
            out.append(event.get("bytes") or event.get("text"))
        return out

    async def close(self) -> None:
        self.done.set()
        await asyncio.gather(*self.proto.tasks)


def run(test: Any) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def test_whole_frames_go_to_the_sink_in_any_split_of_reads() -> None:
    async def main() -> None:
        peer = _Peer()
        await peer.open()
        one, two = frame(b"beat-1"), frame(b"beat-2" * 40)  # short and 16-bit lengths
        peer.proto.data_received(one)
        peer.proto.data_received(one + two)  # two frames in one read
        for cut in range(1, len(two)):  # one frame over two reads
            peer.proto.data_received(two[:cut])
            peer.proto.data_received(two[cut:])
        assert peer.taken == [b"beat-1", b"beat-1", b"beat-2" * 40] + [b"beat-2" * 40] * (
            len(two) - 1
        )
        assert peer.queued() == []
        await peer.close()

    run(main)


def test_a_frame_inside_a_frames_payload_is_not_taken_for_a_frame() -> None:
    # The outer frame's header and mask come in one read; the next read is its
    # payload, which is itself a whole frame: only the parser knows it is not.
    async def main() -> None:
        peer = _Peer()
        await peer.open()
        inner = frame(b"not a message")
        # A zero mask (allowed) leaves the payload on the wire as it is.
        outer = bytes([0x82, 0x80 | len(inner)]) + bytes(4) + inner
        peer.proto.data_received(outer[:6])
        peer.proto.data_received(outer[6:])
        assert peer.taken == [inner]
        await peer.close()

    run(main)


def test_what_the_sink_leaves_reaches_the_endpoint_in_order() -> None:
    async def main() -> None:
        peer = _Peer(accept=lambda message: message.startswith(b"beat"))
        await peer.open()
        peer.proto.data_received(frame(b"report-1"))
        # The endpoint has not read report-1 yet: this heartbeat waits behind it.
        peer.proto.data_received(frame(b"beat-1"))
        peer.proto.data_received(frame(b"text", Opcode.TEXT))
        assert peer.taken == []
        assert peer.queued() == [b"report-1", b"beat-1", "text"]
        peer.proto.data_received(frame(b"beat-2"))
        part = frame(b"frag-", fin=False) + frame(b"ment", Opcode.CONT)
        peer.proto.data_received(part)
        assert peer.taken == [b"beat-2"]
        assert peer.queued() == [b"frag-ment"]
        await peer.close()

    run(main)


def test_a_failing_sink_leaves_the_message_to_the_endpoint() -> None:
    async def main() -> None:
        def broken(message: bytes) -> bool:
            raise ValueError("a bug in a sink")

        peer = _Peer(accept=broken)
        await peer.open()
        peer.proto.data_received(frame(b"beat"))
        assert peer.queued() == [b"beat"]
        await peer.close()

    run(main)


def _sent_messages(written: list[bytes]) -> list[list[Any]]:
    """The messages of each (short, unmasked) binary frame the server wrote."""
    frames = []
    for data in written:
        assert data[0] == 0x82 and data[1] < 126, data
        frames.append(msgspec.msgpack.decode(data[2 : 2 + data[1]]))
    return frames


def test_a_link_writes_one_frame_per_turn_and_falls_back_when_closing() -> None:
    async def main() -> None:
        peer = _Peer()
        await peer.open()
        tap = peer.proto.scope["extensions"][TAP]
        link = Link("node-a", tap.write)
        peer.transport.written.clear()
        link.send("one")
        link.send("two")
        assert peer.transport.written == []  # nothing until the end of this turn
        await asyncio.sleep(0)
        assert _sent_messages(peer.transport.written) == [["one", "two"]]
        # The connection closes under the link: what follows waits for the ASGI
        # path (which reports the closed connection), in order, and the close last.
        peer.transport.closed = True
        link.send("three")
        link.send("four")
        link.close("going")
        queued = [link.outbox.get_nowait() for _ in range(link.outbox.qsize())]
        assert queued == ["three", "four", None]
        await peer.close()

    run(main)
