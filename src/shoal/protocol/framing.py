"""The one length-prefixed framing of shoal's byte streams.

A frame is a 4-byte big-endian body length, then the body. Every stream that
carries messages (channels over TCP or Unix sockets, the executor and task
worker pipes, the dataflow control link) frames them this way, with this code.

:class:`FrameReader` is sans-IO: feed it chunks as they arrive, in any sizes,
and it yields whole bodies. :func:`read_frame` (asyncio streams) and
:class:`BlockingFrames` (blocking sockets) wrap it for the two kinds of I/O.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Iterable, Iterator

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # a body larger than this is refused (a peer gone wrong)
READ_CHUNK = 1024 * 1024


class FrameTooLarge(ValueError):
    """A frame's announced length is over the limit (a corrupt or hostile peer)."""


def frame(body: bytes | bytearray | memoryview) -> bytes:
    """``body`` with its length prefix (one copy; for small bodies)."""
    return HEADER.pack(len(body)) + body


def frame_parts(body: bytes) -> tuple[bytes, bytes]:
    """The prefix and ``body`` apart, for ``writelines`` (no copy of the body)."""
    return HEADER.pack(len(body)), body


class FrameReader:
    """Splits a byte stream into frame bodies, whatever the chunk boundaries."""

    __slots__ = ("_buffer", "_limit", "_need")

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self._need = 0  # body length of the frame being read (0: header not read yet)

    @property
    def buffered(self) -> int:
        """Bytes held that do not make a whole frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Take ``data``; the bodies of the frames it completed, in order."""
        buffer = self._buffer
        if buffer:
            buffer += data
            view = memoryview(buffer)
        else:
            view = memoryview(data)  # nothing held: read the frames straight from data
        out: list[bytes] = []
        start = 0
        size = len(view)
        try:
            while size - start >= HEADER.size:
                (length,) = HEADER.unpack_from(view, start)
                if length > self._limit:
                    raise FrameTooLarge(
                        f"a frame of {length} bytes is over the limit of {self._limit}"
                    )
                end = start + HEADER.size + length
                if end > size:
                    break
                out.append(bytes(view[start + HEADER.size : end]))
                start = end
            rest = b"" if buffer else bytes(view[start:])
        finally:
            view.release()
        if buffer:
            if start:
                del buffer[:start]
        else:
            buffer += rest
        return out

    def at_boundary(self) -> bool:
        """Whether the stream could end here without cutting a frame."""
        return not self._buffer


async def read_frames(reader: asyncio.StreamReader, frames: FrameReader) -> list[bytes] | None:
    """The next whole frames from an asyncio stream (at least one); None at a clean
    end of stream. Raises ``asyncio.IncompleteReadError`` if it ends mid-frame."""
    while True:
        data = await reader.read(READ_CHUNK)
        if not data:
            if frames.at_boundary():
                return None
            raise asyncio.IncompleteReadError(b"", None)
        bodies = frames.feed(data)
        if bodies:
            return bodies


def write_frames(writer: asyncio.StreamWriter, bodies: Iterable[bytes]) -> None:
    """Queue ``bodies`` as frames on an asyncio stream (call ``drain`` after)."""
    parts: list[bytes] = []
    for body in bodies:
        parts += frame_parts(body)
    writer.writelines(parts)


class BlockingFrames:
    """Frames over a blocking socket; ``send`` is thread-safe, ``receive`` is for one
    reading thread."""

    def __init__(self, sock: socket.socket, limit: int = MAX_FRAME) -> None:
        self.sock = sock
        self._frames = FrameReader(limit)
        self._ready: list[bytes] = []
        self._send_lock = threading.Lock()

    def send(self, body: bytes) -> None:
        self.send_many([body])

    def send_many(self, bodies: Iterable[bytes]) -> None:
        parts: list[bytes] = []
        for body in bodies:
            parts += frame_parts(body)
        with self._send_lock:
            self.sock.sendall(b"".join(parts))

    def receive(self) -> bytes | None:
        """The next frame's body; None once the peer closed at a frame boundary.
        Raises ``EOFError`` if the stream ends mid-frame."""
        while not self._ready:
            data = self.sock.recv(READ_CHUNK)
            if not data:
                if self._frames.at_boundary():
                    return None
                raise EOFError("the stream ended in the middle of a frame")
            self._ready = self._frames.feed(data)
            self._ready.reverse()  # pop() from the end: oldest first
        return self._ready.pop()

    def __iter__(self) -> Iterator[bytes]:
        while (body := self.receive()) is not None:
            yield body


__all__ = [
    "HEADER",
    "MAX_FRAME",
    "BlockingFrames",
    "FrameReader",
    "FrameTooLarge",
    "frame",
    "frame_parts",
    "read_frames",
    "write_frames",
]
