"""Frames on the dataflow's TCP connections: a 4-byte length, then a pickle.

Data frames carry many values at once (``("data", [(key, value), ...])``), so
a busy pipe costs one system call and one pickle per batch, not per value.
"""

from __future__ import annotations

import contextlib
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


class FrameSocket:
    """A connected socket that sends and receives frames; sends are thread-safe."""

    def __init__(self, sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
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
        head = self._reader.read(4)
        if len(head) < 4:
            raise EOFError("connection closed")
        (size,) = _LENGTH.unpack(head)
        if size > MAX_FRAME:
            raise EOFError(f"frame of {size} bytes refused")
        data = self._reader.read(size)
        if len(data) < size:
            raise EOFError("connection closed mid-frame")
        return pickle.loads(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already closed by the peer
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
