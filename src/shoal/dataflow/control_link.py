"""The control link between a job host and the coordinator: pickled messages in
shoal's one framing (:mod:`shoal.protocol.framing`).

A host opens it with the coordinator's token (raw bytes, checked before any
frame is read), directly to the coordinator's control port. When it cannot
reach the client (behind NAT, or ``direct=False``), the link goes the other
way: the host serves a control endpoint on its node and the coordinator opens
a Channel to it (:func:`await_coordinator`, :mod:`.control_reach`), first
sending the token; the Channel goes direct to the node or through the
controller, as every channel does. The client is never reached from outside.

The coordinator reads its hosts' messages *plain*: only tuples, lists, dicts,
strings, numbers and the like, never a class or a function. A node runs other
people's code on a shared testbed, and unpickling what it sends could run code
in the client (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import pickle
import socket
import threading
from collections.abc import Callable
from typing import Any

from shoal.channel import AsyncChannel, Channel, ChannelClosed, ChannelError
from shoal.channel.handover import EndpointHost
from shoal.channel.sync import channel_loop
from shoal.dataflow.transport import endpoint_name
from shoal.protocol.framing import BlockingFrames

TOKEN_BYTES = 32
OPEN_TIMEOUT = 10.0  # seconds an opened control channel has to send its token


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
    """A connection carrying pickled messages; sends are thread-safe.

    Over a connected socket (a host's direct link, or a LOCAL host's socket
    pair) or over a :class:`Channel` (the coordinator's link opened to a host's
    control endpoint); ``on_close`` runs once it is closed.

    With ``plain=True`` it receives plain values only (see :func:`loads_plain`):
    a frame with anything else is refused like a broken connection.
    """

    def __init__(
        self,
        conn: socket.socket | Channel,
        plain: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.plain = plain
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self.sock: socket.socket | None = None
        self._channel: Channel | None = None
        if isinstance(conn, Channel):
            self._channel = conn
        else:
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = conn
            self._frames = BlockingFrames(conn)

    def send(self, message: Any) -> None:
        body = pack(message)
        if self._channel is None:
            self._frames.send(body)
            return
        with self._send_lock:  # a sync Channel takes one sender at a time
            self._channel.send(body)

    def _receive_body(self) -> bytes | None:
        if self._channel is None:
            return self._frames.receive()
        try:
            return self._channel.recv()
        except ChannelClosed:
            return None

    def receive(self) -> Any:
        """The next message; raises EOFError when the peer closed the connection
        (an OSError when it was lost)."""
        data = self._receive_body()
        if data is None:
            raise EOFError("connection closed")
        if not self.plain:
            return pickle.loads(data)
        try:
            return loads_plain(data)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise EOFError(f"refused a frame: {exc}") from None

    def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(ChannelError, RuntimeError, TimeoutError):
                self._channel.close()
        else:
            assert self.sock is not None
            with contextlib.suppress(OSError):  # already closed by the peer
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


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


def control_endpoint(token: bytes, job: int, generation: int) -> str:
    """The endpoint a host unreachable from the coordinator serves its control link on."""
    return endpoint_name(token, "control", job, generation)


def await_coordinator(token: bytes, job: int, generation: int, timeout: float) -> ControlLink:
    """Serve this host's control endpoint on its node until the coordinator opens a
    channel to it with ``token``; the control link over that channel.

    For hosts that cannot reach the client (a laptop behind NAT): the client can
    always open a channel to a node, directly or through the controller. Raises
    ConnectionError if the coordinator did not come in ``timeout`` seconds.
    """
    loop = channel_loop()
    done = asyncio.Event()  # set (on the loop) once the link is closed

    async def serve() -> AsyncChannel:
        host = EndpointHost.of_process(loop)
        if host is None:
            raise ConnectionError("this process was not started by an agent: no endpoint to serve")
        arrived: asyncio.Future[AsyncChannel] = loop.create_future()

        async def handler(channel: AsyncChannel) -> None:
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    first = await channel.recv()
            except (TimeoutError, ChannelError):
                return
            if not hmac.compare_digest(first, token):
                await channel.close("wrong token")
                return
            if arrived.done():
                await channel.close("this host has its coordinator already")
                return
            arrived.set_result(channel)
            await done.wait()  # the channel is the link's until it is closed

        name = control_endpoint(token, job, generation)
        try:
            await host.serve(name, handler)
        except ChannelError as exc:
            raise ConnectionError(str(exc)) from None
        try:
            async with asyncio.timeout(timeout):
                return await arrived
        except TimeoutError:
            raise ConnectionError(
                f"the coordinator did not open this host's control channel in {timeout:g} s"
            ) from None
        finally:
            host.drop(name)

    channel = asyncio.run_coroutine_threadsafe(serve(), loop).result()
    return ControlLink(Channel(channel), on_close=lambda: loop.call_soon_threadsafe(done.set))


__all__ = [
    "TOKEN_BYTES",
    "ControlLink",
    "await_coordinator",
    "control_endpoint",
    "loads_plain",
    "open_connection",
    "pack",
    "read_token",
]
