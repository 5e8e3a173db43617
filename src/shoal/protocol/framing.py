"""The one length-prefixed framing of shoal's byte streams.

A frame is a 4-byte big-endian body length, then the body. Every stream that
carries messages (channels over TCP or Unix sockets, the executor and task
worker pipes, the dataflow control link) frames them this way, with this code.

:class:`FrameReader` is sans-IO: feed it chunks as they arrive, in any sizes,
and it yields whole bodies. :func:`read_frames` (asyncio streams) and
:class:`BlockingFrames` (blocking sockets) wrap it for the two kinds of I/O.

:class:`FrameBuffer` is the same split for an ``asyncio.BufferedProtocol``: the
socket is read straight into one preallocated buffer that frames are sliced
from, and a large body straight into its own ``bytearray``, so a byte is
copied once between the kernel and the frame it belongs to.
"""

from __future__ import annotations

import asyncio
import mmap
import socket
import struct
import threading
from collections.abc import Iterable, Iterator

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # a body larger than this is refused (a peer gone wrong)
READ_CHUNK = 1024 * 1024
RECEIVE_BUFFER = 256 * 1024  # FrameBuffer's reusable buffer
OWN_BUFFER = 64 * 1024  # a body at least this long is received into a buffer of its own
REUSE_LIMIT = 4 * 1024 * 1024  # a large body up to this long goes into a buffer used again


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


class FrameBuffer:
    """Splits a byte stream into frame bodies for a reader that fills buffers
    (``asyncio.BufferedProtocol``): :meth:`get_buffer` says where the next bytes
    go, :meth:`filled` that ``n`` bytes went there, and gives the bodies done.

    Small bodies are sliced out of one reused buffer (one ``bytes`` each); a
    body of ``own`` bytes or more is received into a buffer of its own, which
    becomes the body as it is, without a copy. That buffer is used again for
    the next large body (fresh memory costs page faults on every byte) once
    :meth:`release` says the body given out is done with; until then, and for
    bodies over ``reuse`` bytes, each gets a new ``bytearray``. So a large body
    may be a ``memoryview``, valid until ``release``. Raises FrameTooLarge for
    a body over ``limit``.
    """

    __slots__ = (
        "_big",
        "_big_got",
        "_big_view",
        "_buffer",
        "_end",
        "_lent",
        "_limit",
        "_own",
        "_reuse",
        "_spare",
        "_start",
        "_view",
    )

    def __init__(
        self,
        size: int = RECEIVE_BUFFER,
        limit: int = MAX_FRAME,
        own: int = OWN_BUFFER,
        reuse: int = REUSE_LIMIT,
    ) -> None:
        if not HEADER.size < own <= size // 2:
            raise ValueError(f"a FrameBuffer of {size} bytes cannot hold bodies of {own}")
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)
        self._start = 0  # first byte not yet part of a body given out
        self._end = 0  # end of the bytes received
        self._limit = limit
        self._own = own
        self._big: bytearray | memoryview | None = None  # the large body being received
        self._big_view: memoryview | None = None
        self._big_got = 0
        self._reuse = reuse
        self._spare: bytearray | None = None  # the buffer large bodies are received into
        self._lent = False  # a body in _spare is given out and not released yet

    def release(self) -> None:
        """The bodies given out so far are done with: their memory may be used again."""
        self._lent = False

    def get_buffer(self) -> memoryview:
        """Where the next bytes from the stream go (not empty)."""
        if self._big_view is not None:
            return self._big_view[self._big_got :]
        if len(self._buffer) - self._end < self._own:
            # Too little room left: the partial frame moves to the front (it is
            # shorter than ``own``, or it would have a buffer of its own).
            held = self._end - self._start
            self._buffer[:held] = self._view[self._start : self._end]
            self._start, self._end = 0, held
        return self._view[self._end :]

    def filled(self, n: int) -> list[bytes | bytearray | memoryview]:
        """``n`` bytes were written where :meth:`get_buffer` said; the bodies of the
        frames they completed, in order."""
        if self._big is not None:
            self._big_got += n
            if self._big_got < len(self._big):
                return []
            body = self._big
            self._big = self._big_view = None
            return [body]
        self._end += n
        out: list[bytes | bytearray | memoryview] = []
        view, start, end = self._view, self._start, self._end
        while end - start >= HEADER.size:
            (length,) = HEADER.unpack_from(view, start)
            if length > self._limit:
                raise FrameTooLarge(f"a frame of {length} bytes is over the limit of {self._limit}")
            body_start = start + HEADER.size
            if end - body_start >= length:
                out.append(view[body_start : body_start + length].tobytes())
                start = body_start + length
            elif length >= self._own:
                # The rest of this body goes straight into its own buffer.
                held = end - body_start
                big = self._big_buffer(length)
                big[:held] = view[body_start:end]
                self._big = self._big_view = big
                self._big_got = held
                start = end = 0
                break
            else:
                break
        if start == end:
            start = end = 0
        self._start, self._end = start, end
        return out

    def _big_buffer(self, length: int) -> memoryview:
        if length > self._reuse or self._lent:
            return memoryview(bytearray(length))
        if self._spare is None or len(self._spare) < length:
            # Replaced, not resized: a body given out before may still be read.
            self._spare = bytearray(length)
        self._lent = True
        return memoryview(self._spare)[:length]

    def at_boundary(self) -> bool:
        """Whether the stream could end here without cutting a frame."""
        return self._big is None and self._start == self._end


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


class ReceiveBuffer:
    """Reads a blocking socket into one buffer kept for its life.

    ``sock.recv(n)`` allocates ``n`` bytes for every read and shrinks them to
    what came; for a large ``n`` that is an mmap, an mremap and a munmap per
    read, with fresh pages faulted in each time (three system calls of a
    worker's six per task). Here only what came is copied out. The buffer is an
    anonymous mapping: a page of it takes memory only once a read reached it, so
    a process that only ever reads small messages keeps a few pages of it."""

    __slots__ = ("_buffer", "_view")

    def __init__(self, size: int = READ_CHUNK) -> None:
        # Private: a forked child must not read into the same pages as its parent.
        self._buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        self._view = memoryview(self._buffer)

    def recv(self, sock: socket.socket, flags: int = 0) -> bytes:
        """What one read of ``sock`` gives (b"" at its end); raises as ``sock.recv``."""
        n = sock.recv_into(self._view, 0, flags)
        return self._view[:n].tobytes()


class BlockingFrames:
    """Frames over a blocking socket; ``send`` is thread-safe, ``receive`` is for one
    reading thread."""

    def __init__(self, sock: socket.socket, limit: int = MAX_FRAME) -> None:
        self.sock = sock
        self._frames = FrameReader(limit)
        self._ready: list[bytes] = []
        self._send_lock = threading.Lock()
        self._received = ReceiveBuffer()

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
            data = self._received.recv(self.sock)
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
    "FrameBuffer",
    "FrameReader",
    "FrameTooLarge",
    "ReceiveBuffer",
    "frame",
    "frame_parts",
    "read_frames",
    "write_frames",
]
