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
from typing import Protocol

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from shoal.protocol.framing import FrameReader, FrameTooLarge, read_frames, write_frames

STREAM_LIMIT = 1024 * 1024  # asyncio's write buffer high-water mark for a stream
# What a StreamReader holds before it stops reading the socket (asyncio's default,
# 64 KiB, turns a 1 MiB frame into many small reads).
READ_LIMIT = 1024 * 1024


class Transport(Protocol):
    """Frames to and from one peer."""

    async def read(self) -> list[bytes] | None:
        """The next frames (at least one), or None at a clean end of the stream."""
        ...

    async def send(self, bodies: list[bytes]) -> None:
        """Send ``bodies`` as frames, in order; returns once they may be buffered."""
        ...

    async def close(self) -> None:
        """Close the connection (what was sent before still leaves)."""
        ...


class StreamTransport:
    """Length-prefixed frames over an asyncio stream (TCP, Unix socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._frames = FrameReader()
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.transport.set_write_buffer_limits(high=STREAM_LIMIT)

    @classmethod
    async def connect(cls, address: str) -> StreamTransport:
        """Connect to ``host:port`` (an IPv6 host in brackets)."""
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(
            host.strip("[]"), int(port), limit=READ_LIMIT
        )
        return cls(reader, writer)

    async def read(self) -> list[bytes] | None:
        try:
            return await read_frames(self.reader, self._frames)
        except asyncio.IncompleteReadError:
            raise ConnectionError("the connection ended in the middle of a frame") from None
        except FrameTooLarge as exc:
            raise ConnectionError(str(exc)) from None

    async def send(self, bodies: list[bytes]) -> None:
        write_frames(self.writer, bodies)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self.writer.wait_closed()


class WebSocketTransport:
    """One frame per binary message over a WebSocket client connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def read(self) -> list[bytes] | None:
        try:
            message = await self.ws.recv()
        except ConnectionClosedOK:
            return None
        except ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from None
        if isinstance(message, str):
            raise ConnectionError("a text message where channel frames were expected")
        return [message]

    async def send(self, bodies: list[bytes]) -> None:
        try:
            for body in bodies:
                await self.ws.send(body)
        except ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from None

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.close()


__all__ = ["READ_LIMIT", "StreamTransport", "Transport", "WebSocketTransport"]
