"""The control link between a job host and the coordinator: pickled messages in
shoal's one framing (:mod:`shoal.protocol.framing`).

A host opens it with the coordinator's token (raw bytes, checked before any
frame is read), directly to the coordinator's control port or, when it cannot
reach the client, through the controller's channel relay.

The coordinator reads its hosts' messages *plain*: only tuples, lists, dicts,
strings, numbers and the like, never a class or a function. A node runs other
people's code on a shared testbed, and unpickling what it sends could run code
in the client (docs/security.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import pickle
import socket
from typing import Any

from shoal.client.channels import connect_channel
from shoal.protocol.framing import BlockingFrames

TOKEN_BYTES = 32


class _PlainUnpickler(pickle.Unpickler):
    """Builds only the types pickle knows without a class (no globals at all)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a plain frame may not hold {module}.{name}")


def loads_plain(data: bytes) -> Any:
    """Unpickle ``data`` if it holds plain values only; UnpicklingError otherwise."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def pack(message: Any) -> bytes:
    """One message as its frame's body."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


class ControlLink:
    """A connected socket carrying pickled messages; sends are thread-safe.

    With ``plain=True`` it receives plain values only (see :func:`loads_plain`):
    a frame with anything else is refused like a broken connection.
    """

    def __init__(self, sock: socket.socket, plain: bool = False) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.plain = plain
        self._frames = BlockingFrames(sock)

    def send(self, message: Any) -> None:
        self._frames.send(pack(message))

    def receive(self) -> Any:
        """The next message; raises EOFError when the peer closed the connection."""
        data = self._frames.receive()
        if data is None:
            raise EOFError("connection closed")
        if not self.plain:
            return pickle.loads(data)
        try:
            return loads_plain(data)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise EOFError(f"refused a frame: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already closed by the peer
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def read_token(sock: socket.socket, token: bytes, timeout: float = 10.0) -> bool:
    """Read and check the peer's token; False (close it) if it is wrong or slow."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < TOKEN_BYTES:
            chunk = sock.recv(TOKEN_BYTES - len(data))
            if not chunk:
                return False
            data += chunk
    except OSError:
        return False
    sock.settimeout(None)
    return hmac.compare_digest(data, token)


def open_connection(host: str, port: int, token: bytes, timeout: float = 5.0) -> ControlLink:
    """The control link to the coordinator at ``host:port``."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    sock.sendall(token)
    return ControlLink(sock)


def channel_name(token: bytes) -> str:
    """The controller channel on which a run's coordinator also listens."""
    return "dataflow-" + hashlib.sha256(token).hexdigest()[:32]


def open_via_controller(token: bytes, timeout: float = 5.0) -> ControlLink:
    """Reach the coordinator through the controller's channel relay.

    For hosts that cannot reach the client (a laptop behind NAT): every executor
    reaches the controller, with the endpoint and token its agent gave it.
    """
    endpoint = os.environ.get("SHOAL_ENDPOINT")
    secret = os.environ.get("SHOAL_EXECUTOR_TOKEN")
    if not endpoint or not secret:
        raise ConnectionError("no SHOAL_ENDPOINT/SHOAL_EXECUTOR_TOKEN here to reach the controller")
    sock = connect_channel(endpoint, secret, channel_name(token), timeout)
    sock.sendall(token)
    return ControlLink(sock)


__all__ = [
    "TOKEN_BYTES",
    "ControlLink",
    "channel_name",
    "loads_plain",
    "open_connection",
    "open_via_controller",
    "pack",
    "read_token",
]
