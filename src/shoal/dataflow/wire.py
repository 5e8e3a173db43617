"""Frames on the dataflow's TCP connections: a 4-byte length, then a pickle.

Data frames carry many values at once (``("data", [(key, value), ...])``), so
a busy pipe costs one system call and one pickle per batch, not per value.

The client's coordinator reads its job hosts' frames *plain*: only tuples,
lists, dicts, strings, numbers and the like, never a class or a function. A
node runs other people's code on a shared testbed, and unpickling what it sends
could run code in the client (docs/security.md).
"""

from __future__ import annotations

import contextlib
import io
import pickle
import socket
import struct
import threading
from typing import Any, BinaryIO

_LENGTH = struct.Struct("!I")
MAX_FRAME = 1 << 30


def pack(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


class _PlainUnpickler(pickle.Unpickler):
    """Builds only the types pickle knows without a class (no globals at all)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a plain frame may not hold {module}.{name}")


def loads_plain(data: bytes) -> Any:
    """Unpickle ``data`` if it holds plain values only; UnpicklingError otherwise."""
    return _PlainUnpickler(io.BytesIO(data)).load()


class FrameSocket:
    """A connected socket that sends and receives frames; sends are thread-safe.

    With ``plain=True`` it receives plain values only (see :func:`loads_plain`):
    a frame with anything else is refused like a broken connection.
    """

    def __init__(self, sock: socket.socket, plain: bool = False) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.plain = plain
        self._reader: BinaryIO = sock.makefile("rb", buffering=1 << 16)
        self._send_lock = threading.Lock()

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 5.0) -> FrameSocket:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(None)
        return cls(sock)

    def send(self, message: Any) -> None:
        self.send_raw(pack(message))

    def send_raw(self, frame: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(frame)

    def receive(self) -> Any:
        """The next message; raises EOFError when the peer closed the connection."""
        data = self.receive_raw()
        if not self.plain:
            return pickle.loads(data)
        try:
            return loads_plain(data)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise EOFError(f"refused a frame: {exc}") from None

    def receive_raw(self) -> bytes:
        """The next frame's bytes, not unpickled; EOFError when the peer closed."""
        head = self._reader.read(4)
        if len(head) < 4:
            raise EOFError("connection closed")
        (size,) = _LENGTH.unpack(head)
        if size > MAX_FRAME:
            raise EOFError(f"frame of {size} bytes refused")
        data = self._reader.read(size)
        if len(data) < size:
            raise EOFError("connection closed mid-frame")
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already closed by the peer
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
