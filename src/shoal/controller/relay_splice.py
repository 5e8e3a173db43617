"""The relay's fast path: two connections spliced byte for byte.

When both ends of a relayed channel ask for it (the WebSocket subprotocol
:data:`~shoal.channel.connect.STREAM_SUBPROTOCOL`), the WebSockets carry only
the HTTP upgrade (the bearer token, TLS, proxies) and the ``Open``: the opener
sends it as its one WebSocket message and the controller passes it on to the
node as the one message it sends there. From then on both connections carry
length-prefixed channel frames, exactly as a direct connection does, and the
controller copies whatever arrives on one to the other without looking at it
(each connection's WebSocket protocol hands it over, see
:meth:`~shoal.controller.ws_protocol.TappedWebSocketProtocol.hand_over`).

That is one read and one write per chunk in the controller, where forwarding
WebSocket messages parsed, unmasked, queued, re-framed and copied each one
several times. What it holds per channel stays bounded: a side whose
connection cannot take more stops the other side's reading.

The controller still follows where frames begin in each direction (a length
prefix per frame, cheap): to end a channel whose token was revoked, it stops
forwarding and gives each end a ``Close`` saying why, unless the end is in the
middle of a frame (then it only sees its connection end).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketState

from shoal.controller.ws_protocol import HAND_OVER, Lost
from shoal.controller.zero_copy import ZERO_COPY_MIN, ZeroCopyPump, zero_copy_fd
from shoal.protocol import channel_messages as cm
from shoal.protocol.framing import HEADER, frame

if TYPE_CHECKING:
    from shoal.controller.channel_relay import ChannelService

# What a spliced connection may hold unsent before the other side's reading
# stops: a whole 1 MiB message in flight, so large messages stream without a
# stop per message.
WRITE_HIGH = 4 * 1024 * 1024

HandOver = Callable[[asyncio.BaseProtocol], tuple[asyncio.Transport, Lost]]


def hand_over_of(ws: WebSocket) -> HandOver | None:
    """How to take ``ws``'s connection over (None: the server cannot hand it over)."""
    extensions = ws.scope.get("extensions") or {}
    hand_over: HandOver | None = extensions.get(HAND_OVER)
    return hand_over


class _Frames:
    """Where frames begin in the bytes written to one end (their length prefixes)."""

    __slots__ = ("count", "head", "left")

    def __init__(self) -> None:
        self.left = 0  # bytes of the current frame still to come
        self.head = b""  # the part of the next length prefix seen so far
        self.count = 0  # frames begun

    def at_boundary(self) -> bool:
        return self.left == 0 and not self.head

    def passed(self, data: bytes) -> None:
        size = len(data)
        pos = self.left
        if pos >= size:  # inside a large frame: the usual case for big messages
            self.left = pos - size
            return
        head = self.head
        count = self.count
        while pos < size:
            if head:
                need = 4 - len(head)
                head += data[pos : pos + need]
                if len(head) < 4:
                    pos = size
                    break
                pos += need + HEADER.unpack(head)[0]
                head = b""
                count += 1
            elif size - pos >= 4:
                pos += 4 + HEADER.unpack_from(data, pos)[0]
                count += 1
            else:
                head = bytes(data[pos:])
                pos = size
        self.left = pos - size
        self.head = head
        self.count = count


class _End(asyncio.Protocol):
    """One connection of a splice: what arrives is written to the other as it is
    (the rest of a large frame's body moved in the kernel, see
    :mod:`shoal.controller.zero_copy`)."""

    def __init__(self, splice: Splice, name: str, hand_over: HandOver) -> None:
        self.splice = splice
        self.name = name
        self.other: _End | None = None
        self.into = _Frames()
        self.gone = False
        self.held: list[bytes] = []  # arrived before the other end was there
        self.transport, self._lost = hand_over(self)  # reading is paused
        self.transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.fd = zero_copy_fd(self.transport)
        # A frame's body moving in the kernel from the other end into this one:
        # ``draining`` while what this connection holds unsent goes first.
        self.draining = False
        self.pump: ZeroCopyPump | None = None

    @property
    def moving(self) -> bool:
        """Whether a frame's body is moving in the kernel into this connection."""
        return self.pump is not None and self.pump.moving

    def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # its peer is gone: what the other end still sends goes nowhere
        into = self.into
        begun = into.count
        into.passed(data)
        self.transport.write(data)
        counts = self.splice.counts
        counts.relayed_messages += into.count - begun
        counts.relayed_bytes += len(data)
        if into.left >= ZERO_COPY_MIN and self.fd is not None:
            self._begin_zero_copy()

    def _begin_zero_copy(self) -> None:
        source = self.other
        if source is None or source.fd is None or source.gone or self.splice.cut:
            return
        # Nothing more is read from the source but by the pump, and the pump
        # writes here only once what the transport holds is sent (the limit of
        # 0 has the transport call resume_writing when it is).
        source.transport.pause_reading()
        self.draining = True
        if self.transport.get_write_buffer_size():
            self.transport.set_write_buffer_limits(high=0)
        else:
            self._start_pump()

    def _start_pump(self) -> None:
        source = self.other
        assert source is not None and source.fd is not None and self.fd is not None
        self.draining = False
        pump = self.pump
        if pump is None or pump.closed:
            try:
                pump = self.pump = ZeroCopyPump(asyncio.get_running_loop(), source.fd, self.fd)
            except OSError:
                self._pump_done(None)  # no file descriptors to spare: copied as before
                return
        pump.move(self.into.left, self._pumped, self._pump_done)

    def _pumped(self, size: int) -> None:
        self.into.left -= size
        counts = self.splice.counts
        counts.relayed_bytes += size
        counts.zero_copy_bytes += size

    def _pump_done(self, error: BaseException | None) -> None:
        if error is not None and not isinstance(error, EOFError):
            # The move failed: a failed socket's transport finds out as it goes
            # on; this one cannot take a frame that was cut short.
            self.transport.abort()
        elif error is None and self._next_in_kernel():
            return
        source = self.other
        if source is not None and not source.gone:
            # Also after EOF: the source's transport then reads the end itself.
            source.transport.resume_reading()

    def _next_in_kernel(self) -> bool:
        """Move the source's next frame, header and all, in the kernel too if it
        is large and its header is there: a stream of large frames then never
        comes up through the controller (else each one's first read would, and
        reading would pause and resume around each). Whether it did."""
        pump, source = self.pump, self.other
        if pump is None or pump.closed or source is None or source.gone or self.splice.cut:
            return False
        if not self.into.at_boundary():
            return False
        head = pump.peek(HEADER.size)
        if len(head) < HEADER.size:
            return False  # not here yet: the transport reads it as usual
        (length,) = HEADER.unpack(head)
        if length < ZERO_COPY_MIN or self.transport.is_closing():
            return False
        into = self.into
        into.count += 1
        into.left = HEADER.size + length  # counted down as the pump moves it
        self.splice.counts.relayed_messages += 1
        pump.move(into.left, self._pumped, self._pump_done)
        return True

    def stop_pump(self) -> None:
        """Stop moving bytes in the kernel into this connection (it or its
        source is going away) and let go of what the pump holds."""
        self.draining = False
        if self.pump is not None:
            self.pump.close()
            self.pump = None

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None:
            self.held.append(data)
        elif not self.splice.cut:
            other.write(data)

    def eof_received(self) -> bool:
        return False  # a channel has no half-close: the connection closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self._lost(exc)
        self.splice.lost(self)

    def pause_writing(self) -> None:
        if self.draining or self.moving:
            return  # the source is paused for the pump already
        if self.other is not None and not self.other.gone:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.draining:
            self.transport.set_write_buffer_limits(high=WRITE_HIGH)
            self._start_pump()
            return
        if self.moving:
            return  # the pump resumes the source when the frame is through
        if self.other is not None and not self.other.gone:
            self.other.transport.resume_reading()

    def close(self, reason: str = "") -> None:
        """Close the connection once what was forwarded to it is sent; first a
        ``Close`` saying ``reason`` if there is one and a frame may begin here."""
        self.stop_pump()
        if self.gone or self.transport.is_closing():
            return
        if reason and self.into.at_boundary():
            self.transport.write(frame(cm.encode(cm.Close(reason))))
        self.transport.close()


class Splice:
    """A relayed channel's two connections, spliced (see the module doc).

    Registered with the Authenticator as a WebSocket is: revoking the opener's
    token calls :meth:`close`, which cuts the channel."""

    def __init__(self, counts: ChannelService, opener: str, hand_over: HandOver) -> None:
        self.counts = counts
        self.cut = False
        self.application_state = WebSocketState.CONNECTED
        self.ended = asyncio.Event()  # both connections are gone
        self.opener = _End(self, opener, hand_over)
        self.target: _End | None = None

    def refuse(self, reason: str) -> None:
        """Answer the opener with a ``Refuse`` and close (no node was reached)."""
        self.cut = True
        self.opener.transport.write(frame(cm.encode(cm.Refuse(reason))))
        self.opener.close()

    def join(self, name: str, hand_over: HandOver) -> None:
        """Splice the node's connection to the opener's and start forwarding."""
        target = self.target = _End(self, name, hand_over)
        opener = self.opener
        if opener.gone or self.cut:
            target.close()
            return
        target.other, opener.other = opener, target
        for data in opener.held:  # only a peer that did not wait for Accept sends early
            target.write(data)
        opener.held = []
        if not (target.moving or target.draining):  # else the pump reads it now
            opener.transport.resume_reading()
        target.transport.resume_reading()

    def lost(self, end: _End) -> None:
        # The other end sees its connection end, which its channel takes for
        # the peer lost (as a Close marked lost would say).
        end.stop_pump()  # closing the other end stops the pump into it
        other = end.other
        if other is not None:
            other.close()
        if self.opener.gone and (self.target is None or self.target.gone):
            self.application_state = WebSocketState.DISCONNECTED
            self.ended.set()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Cut the channel: forward nothing more and tell both ends why."""
        self.cut = True
        self.application_state = WebSocketState.DISCONNECTED
        why = f"the token it was opened with was revoked ({reason or code})"
        self.opener.close(why)
        if self.target is not None:
            self.target.close(why)

    async def finished(self) -> None:
        """Wait until both connections are gone."""
        if self.target is None and not self.opener.gone:
            self.opener.close()
        await self.ended.wait()


__all__ = ["Splice", "hand_over_of"]
