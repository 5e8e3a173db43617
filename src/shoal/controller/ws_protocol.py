"""The controller's WebSocket protocol: uvicorn's sans-I/O one, with a tap that
lets an endpoint take a message in the callback that received it.

A thousand idle agents send a thousand heartbeats a second, and on the ASGI
path each costs a queue put, a pause and a resume of reading (a system call
each), a wake-up of the endpoint's task and starlette's receive: most of the
controller's idle CPU. An endpoint that can handle a message without waiting
for anything (``AgentGateway`` with a heartbeat) registers a *sink* on the
connection's :class:`FrameTap`; the protocol offers it every binary message,
in order, before queueing it. A sink that returns False (or raises) leaves the
message to the ASGI path, unchanged.

A read that holds exactly one small, whole binary frame, arriving while the
parser waits at a frame boundary (an idle agent's heartbeat, nearly always) is
unmasked here and offered to the sink without the generic parser; anything
else, and any message the sink leaves, takes the usual path unchanged.

The tap also lets an endpoint send without the ASGI path (``FrameTap.write``):
a thousand agents each answered in turn cost the controller a task wake-up,
an ASGI message and the middleware's send wrappers per frame otherwise.

The tap is an ASGI server extension (``scope["extensions"][TAP]``): under any
other server it is absent and endpoints read as usual.

A second extension, ``scope["extensions"][HAND_OVER]``, lets an endpoint take
the connection itself once the WebSocket has done its part (the handshake and
its first messages): the relay then splices two connections' bytes without
parsing WebSocket frames (see :mod:`shoal.controller.channel_relay`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import apply_mask
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.streams import StreamReader

log = logging.getLogger("shoal.controller")

TAP = "shoal.frame_tap"
HAND_OVER = "shoal.hand_over"
# What the protocol that takes a connection over calls when it is lost: the
# WebSocket protocol's own bookkeeping (the server's list of connections).
Lost = Callable[[Exception | None], None]
# The whole frames taken without the generic parser: FIN + binary, no extension
# bits, masked (as every client frame), at most this long.
_FIN_BINARY = 0x82
_MASKED = 0x80
_LONE_FRAME_MAX = 0xFFFF
# The parser waits between frames when it is suspended in this generator.
_AT_EOF = StreamReader.at_eof.__code__


class FrameTap:
    """Where an endpoint hooks into its connection's parser (see the module doc)."""

    __slots__ = ("sink", "writable", "write")

    def __init__(self) -> None:
        # Takes one binary message; True if it handled it (it is not queued for
        # the endpoint), False to leave it to the endpoint's receive.
        self.sink: Callable[[bytes], bool] | None = None
        # Sends one binary message now, as the ASGI send would; False (nothing
        # sent) when the connection is not open: the ASGI send then says why.
        # It does not wait for a peer that reads slowly: see ``writable``.
        self.write: Callable[[bytes], bool] | None = None
        # Whether the peer takes what is written (the write buffer is under its
        # high-water mark). An endpoint that answers in the sink answers only
        # then, so a client that does not read cannot grow that buffer.
        self.writable: Callable[[], bool] = lambda: True


class TappedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with a :class:`FrameTap` per connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tap = FrameTap()
        self.tap.write = self._write_now
        self.tap.writable = self.writable.is_set

    def _write_now(self, data: bytes) -> bool:
        if (
            self.close_sent
            or self.initial_response is not None
            or self.conn.state is not OPEN
            or self.transport.is_closing()
        ):
            return False
        self.conn.send_binary(data)
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    # Cleared for good if the parser's internals are not what _lone_frame reads
    # (another websockets release): every frame then takes the generic parser.
    shortcut = True

    def data_received(self, data: bytes) -> None:
        sink = self.tap.sink
        if sink is not None and TappedWebSocketProtocol.shortcut:
            try:
                payload = self._lone_frame(data)
            except AttributeError:
                log.warning("websockets' parser has changed: heartbeats take the generic path")
                TappedWebSocketProtocol.shortcut = False
                payload = None
            if payload is not None and self._offer(sink, payload):
                return
        super().data_received(data)

    def _lone_frame(self, data: bytes) -> bytes | None:
        """The payload if ``data`` is one whole small binary frame that the parser
        may skip (it waits between frames and nothing is queued); else None."""
        size = len(data)
        if size < 6 or data[0] != _FIN_BINARY or not data[1] & _MASKED:
            return None
        length = data[1] & 0x7F
        if length < 126:
            header = 6
        elif length == 126 and size >= 8:
            length, header = int.from_bytes(data[2:4], "big"), 8
        else:
            return None
        conn = self.conn
        if (
            header + length != size
            or length > _LONE_FRAME_MAX
            or conn.state is not OPEN
            or conn.current_size is not None  # inside a fragmented message
            or conn.reader.buffer
            or self.close_sent
            or not self.queue.empty()
        ):
            return None
        # The innermost generator the parser waits in (server parse -> parse -> ...).
        waiting, inner = conn.parser, None
        while waiting is not None:
            waiting, inner = getattr(waiting, "gi_yieldfrom", None), waiting
        if getattr(inner, "gi_code", None) is not _AT_EOF:
            return None  # mid-frame: the header came in an earlier read
        return apply_mask(data[header:], data[header - 4 : header])

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][TAP] = self.tap
            scope["extensions"][HAND_OVER] = self.hand_over

    def hand_over(self, protocol: asyncio.BaseProtocol) -> tuple[asyncio.Transport, Lost]:
        """Give the connection to ``protocol``, which reads it from the next byte on
        (reading is left paused) and must call the returned function from its
        ``connection_lost``. Only between messages: raises RuntimeError if the
        handshake is not done, the connection is closing, or bytes of a further
        frame were read already (the peer sent more than it should have)."""
        conn = self.conn
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.transport.is_closing()
            or conn.state is not OPEN
            or conn.reader.buffer
            or conn.current_size is not None
            or self.frames
            or not self.queue.empty()
        ):
            raise RuntimeError("the WebSocket is not between messages: it cannot be handed over")
        # No keepalive pings, and no frame from the ASGI side (a close after the
        # endpoint returns only closes the transport): the bytes are the new protocol's.
        self.stop_keepalive()
        self.close_sent = True
        self.transport.pause_reading()
        self.read_paused = True
        self.transport.set_protocol(protocol)
        return self.transport, self.connection_lost

    def send_receive_event_to_app(self) -> None:
        sink = self.tap.sink
        # Only when nothing waits for the endpoint: messages stay in order.
        if (
            sink is not None
            and self.curr_msg_data_type == "bytes"
            and len(self.frames) == 1
            and not self.close_sent
            and self.queue.empty()
            and self._offer(sink, self.frames[0])
        ):
            self.frames = []
            return
        super().send_receive_event_to_app()

    @staticmethod
    def _offer(sink: Callable[[bytes], bool], message: bytes) -> bool:
        try:
            return sink(message)
        except Exception:
            # The endpoint reads the message itself and reports what is wrong.
            log.exception("a WebSocket frame sink failed; the message goes the usual way")
            return False
