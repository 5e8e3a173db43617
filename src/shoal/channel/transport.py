"""What a channel's frames travel on: a byte stream, or a WebSocket.

A transport moves whole frames (bodies) and knows nothing of their meaning. On
a stream (TCP or a Unix socket) each body is length-prefixed
(:mod:`shoal.protocol.framing`); on a WebSocket each body is one binary
message. Read errors surface as ``ConnectionError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from shoal.protocol.channel_messages import SEND_IN_PLACE, Pieces
from shoal.protocol.framing import HEADER, MAX_FRAME, FrameBuffer, FrameTooLarge

STREAM_LIMIT = 1024 * 1024  # asyncio's write buffer high-water mark for a stream
# Bodies received but not yet read before the stream stops reading the socket
# (the channel's credit bounds them anyway; this bounds a peer that ignores it).
READ_LIMIT = 4 * 1024 * 1024
# A channel's WebSocket (to the relay): frames are msgpack and mostly
# incompressible, up to MAX_FRAME; the write buffer holds a whole Data batch
# before send() waits for it to drain (websockets' default, 32 KiB, makes every
# large frame wait).
WEBSOCKET_OPTIONS: dict[str, Any] = {
    "compression": None,
    "max_size": MAX_FRAME + 1024,
    "write_limit": STREAM_LIMIT,
}

# A body from read() may be a view of the transport's memory: it is the
# caller's until its next read().
Body = bytes | bytearray | memoryview
# What may be sent as one frame: a body, or a body in pieces (large payloads
# sent from where they lie, see channel_messages.encode_data).
Sendable = Body | Pieces


def joined(body: Sendable) -> Body:
    """``body`` in one piece (a copy if it came in several)."""
    return b"".join(body) if type(body) is tuple else body  # type: ignore[arg-type]


class Transport(Protocol):
    """Frames to and from one peer."""

    async def read(self) -> list[Body] | None:
        """The next frames (at least one), or None at a clean end of the stream;
        they are the caller's until it calls ``read`` again."""
        ...

    async def send(self, bodies: list[Sendable]) -> None:
        """Send ``bodies`` as frames, in order; returns once they may be buffered."""
        ...

    async def close(self) -> None:
        """Close the connection (what was sent before still leaves)."""
        ...


class _FrameProtocol(asyncio.BufferedProtocol):
    """Receives frames straight into a :class:`FrameBuffer` and holds them for
    :meth:`StreamTransport.read`; tells when the write buffer has room."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.frames = FrameBuffer()
        self.ready: list[Body] = []
        self.ready_bytes = 0
        self.error: ConnectionError | None = None
        self.ended = False  # the peer's end of stream, or the connection lost
        self.paused = False  # reading paused: ``ready`` is full
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.on_connect: Callable[[StreamTransport], None] | None = None
        self.receiver: Callable[[list[Body]], bool] | None = None  # see deliver_to

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=STREAM_LIMIT)
        if self.on_connect is not None:
            self.on_connect(StreamTransport(self))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            bodies = self.frames.filled(nbytes)
        except FrameTooLarge as exc:
            self._end(ConnectionError(str(exc)))
            assert self.transport is not None
            self.transport.abort()
            return
        if bodies and self.receiver is not None:
            if not self.receiver(bodies):
                self.receiver = None  # what comes later waits for take()
            self.frames.release()
        elif bodies:
            self.ready += bodies
            self.ready_bytes += sum(map(len, bodies))
            if self.ready_bytes > READ_LIMIT and not self.paused:
                self.paused = True
                assert self.transport is not None
                self.transport.pause_reading()
            self._wake()

    def eof_received(self) -> bool:
        self._end(None)
        return False  # close our side too: a channel has no half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(ConnectionError(str(exc)) if exc is not None else None)
        if not self.closed.done():
            self.closed.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _end(self, error: ConnectionError | None) -> None:
        if not self.ended:
            self.ended = True
            if error is None and not self.frames.at_boundary():
                error = ConnectionError("the connection ended in the middle of a frame")
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> list[Body] | None:
        if not self.ready:
            # The caller is done with what it read before (and nothing read
            # since, which may sit in the reused buffer, is waiting for it).
            self.frames.release()
        while not self.ready:
            if self.ended:
                if self.error is not None:
                    raise self.error
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        bodies, self.ready, self.ready_bytes = self.ready, [], 0
        if self.paused and not self.ended:
            self.paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return bodies

    def deliver_to(self, receiver: Callable[[list[Body]], bool]) -> None:
        # Frames held for take() go first, so the order is kept.
        if self.ready:
            bodies, self.ready, self.ready_bytes = self.ready, [], 0
            if self.paused and not self.ended:
                self.paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            keep = receiver(bodies)
            self.frames.release()
            if not keep:
                return
        self.receiver = receiver

    def write_paused(self) -> bool:
        return self._writable is not None and not self._writable.done()

    async def drain(self) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError(str(self.error or "the connection is closed"))
        if self._writable is not None and not self._writable.done():
            await self._writable


class StreamTransport:
    """Length-prefixed frames over a stream socket (TCP, Unix), read straight into
    a reused buffer (:class:`~shoal.protocol.framing.FrameBuffer`) and written
    without joining large bodies with anything."""

    def __init__(self, protocol: _FrameProtocol) -> None:
        assert protocol.transport is not None
        self._protocol = protocol
        self._transport = protocol.transport

    @classmethod
    async def connect(cls, address: str) -> StreamTransport:
        """Connect to ``host:port`` (an IPv6 host in brackets)."""
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_FrameProtocol, host.strip("[]"), int(port))
        return cls(protocol)

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> StreamTransport:
        """Frames over ``sock``, a connected stream socket (it becomes the transport's)."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_FrameProtocol, sock=sock)
        return cls(protocol)

    @classmethod
    def adopt(
        cls, transport: asyncio.Transport, pending: list[Body] | None = None
    ) -> StreamTransport:
        """Frames over ``transport``, a connection another protocol spoke on until
        now (a relay's WebSocket after its handshake and first message), from its
        next byte on; ``pending``: frames that came before, read first."""
        protocol = _FrameProtocol()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.ready += pending or []
        transport.resume_reading()
        return cls(protocol)

    @staticmethod
    async def serve(
        handler: Callable[[StreamTransport], Awaitable[None]], host: str, port: int = 0
    ) -> asyncio.Server:
        """Listen on ``host:port``; each connection is run as ``handler(transport)``
        in a task of its own."""
        loop = asyncio.get_running_loop()

        def protocol() -> _FrameProtocol:
            made = _FrameProtocol()
            made.on_connect = lambda transport: _spawn(handler(transport))
            return made

        return await loop.create_server(protocol, host, port)

    @property
    def socket(self) -> socket.socket:
        """The connection's socket (for passing its descriptor on)."""
        sock = self._transport.get_extra_info("socket")
        assert sock is not None
        return sock

    @property
    def encrypted(self) -> bool:
        """The connection runs TLS (a relay's, from a TLS controller): its socket
        does not carry the frames as they are, so it cannot be passed on."""
        return self._transport.get_extra_info("ssl_object") is not None

    async def read(self) -> list[Body] | None:
        return await self._protocol.take()

    def deliver_to(self, receiver: Callable[[list[Body]], bool]) -> None:
        """Hand frames to ``receiver`` as they arrive, in the protocol's callback (no
        task to wake a loop turn later), those already received first; the bodies
        are the receiver's only during the call. It returns False to stop: later
        frames wait for ``read``, which meanwhile returns only at the end of the
        stream (None, or the error)."""
        self._protocol.deliver_to(receiver)

    async def send(self, bodies: list[Sendable]) -> None:
        if self._transport.is_closing():
            raise ConnectionError(str(self._protocol.error or "the connection is closed"))
        self.write(bodies)
        await self._protocol.drain()

    def write_ready(self) -> bool:
        """Whether ``write`` may be called now: the connection is open and its
        write buffer below the high-water mark (``send`` would not wait)."""
        return not self._transport.is_closing() and not self._protocol.write_paused()

    def write(self, bodies: list[Sendable]) -> None:
        """``send`` without waiting for the write buffer to drain (call when
        ``write_ready``): lets a channel send from where the message is made, not
        from its writer task a loop turn later."""
        write = self._transport.write
        small: list[Body] = []
        for body in bodies:
            pieces = body if type(body) is tuple else (body,)
            small.append(HEADER.pack(sum(map(len, pieces))))
            for piece in pieces:
                if len(piece) < SEND_IN_PLACE:  # joined with its neighbours into one write
                    small.append(piece)
                    continue
                # A large piece goes out on its own, as it is: no copy to join it.
                # Bytes as a view: asyncio slices off what the socket did not
                # take, and a slice of bytes is a copy of the rest (a view's is
                # not). Only bytes: a view would pin a caller's bytearray's size.
                write(b"".join(small))
                small = []
                write(memoryview(piece) if type(piece) is bytes else piece)
        if small:
            write(b"".join(small))

    async def close(self) -> None:
        self._transport.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._protocol.closed


_handlers: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    # The server's handlers hold their own tasks (ChannelServer tracks and ends
    # them); this only keeps each alive until it is done.
    task = asyncio.get_running_loop().create_task(coro)
    _handlers.add(task)
    task.add_done_callback(_handlers.discard)


class WebSocketTransport:
    """One frame per binary message over a WebSocket client connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def read(self) -> list[Body] | None:
        try:
            message = await self.ws.recv()
        except ConnectionClosedOK:
            return None
        except ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from None
        if isinstance(message, str):
            raise ConnectionError("a text message where channel frames were expected")
        return [message]

    async def send(self, bodies: list[Sendable]) -> None:
        try:
            for body in bodies:
                await self.ws.send(joined(body))
        except ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from None

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()


__all__ = [
    "READ_LIMIT",
    "WEBSOCKET_OPTIONS",
    "Body",
    "Sendable",
    "StreamTransport",
    "Transport",
    "WebSocketTransport",
    "joined",
]
