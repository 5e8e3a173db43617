"""Byte streams through the controller, for peers that cannot reach each other.

``connect_channel(...)`` and ``ChannelListener(...).accept()`` return an ordinary
connected socket (one end of a local socket pair); two threads pump its bytes
to and from the controller's channel relay. Code written for a direct TCP
connection runs on it unchanged.

::

    listener = ChannelListener(endpoint, token, "results")   # on one side
    sock = connect_channel(endpoint, token, "results")        # on the other
    peer = listener.accept()
    sock.sendall(b"hello"); peer.recv(5)                      # b'hello'
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import quote

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

# One error class for every channel, old (these named relay channels) and new
# (shoal.channel): nobody listens, refused, unreachable, lost.
from shoal.channel.errors import ChannelError

__all__ = ["ChannelError", "ChannelListener", "connect_channel"]

CHUNK = 256 * 1024
DRAIN_TIMEOUT = 5.0  # seconds a close waits for written data to leave


def _ws_url(endpoint: str, path: str) -> str:
    base = endpoint.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base + path


def _open(endpoint: str, token: str, path: str, timeout: float) -> ClientConnection:
    try:
        # Entered by hand (closed by the pump threads): websockets warns about
        # connections used outside a `with` block.
        return connect(
            _ws_url(endpoint, path),
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
            compression=None,
            open_timeout=timeout,
        ).__enter__()
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise ChannelError(f"cannot open channel {path}: {exc}") from None


class _BridgedSocket(socket.socket):
    """The user's end of a bridge: closing it waits until what was written has
    left for the controller (the process may exit right after, taking the daemon
    pump threads with it)."""

    pump_out: threading.Thread | None = None

    def close(self) -> None:
        super().close()
        pump = self.pump_out
        if pump is not None and pump is not threading.current_thread():
            pump.join(DRAIN_TIMEOUT)


def _bridge(ws: ClientConnection) -> socket.socket:
    """A socket whose peer end is pumped to and from ``ws`` by two daemon threads."""
    pair, theirs = socket.socketpair()
    mine = _BridgedSocket(pair.family, pair.type, fileno=pair.detach())

    def to_ws() -> None:
        try:
            while data := theirs.recv(CHUNK):
                ws.send(data)
        except (OSError, ConnectionClosed):
            pass
        finally:
            with contextlib.suppress(Exception):
                ws.close()

    def from_ws() -> None:
        try:
            for message in ws:
                if isinstance(message, bytes):
                    theirs.sendall(message)
        except (OSError, ConnectionClosed):
            pass
        finally:
            with contextlib.suppress(OSError):
                theirs.shutdown(socket.SHUT_RDWR)

    mine.pump_out = threading.Thread(target=to_ws, name="channel-out", daemon=True)
    mine.pump_out.start()
    threading.Thread(target=from_ws, name="channel-in", daemon=True).start()
    return mine


def connect_channel(endpoint: str, token: str, name: str, timeout: float = 10.0) -> socket.socket:
    """Connect to whoever listens on channel ``name``; raises ChannelError if nobody does."""
    ws = _open(endpoint, token, f"/api/channels/connect/{quote(name, safe='')}", timeout)
    return _bridge(ws)


class ChannelListener:
    """Listens on channel ``name``; ``accept()`` returns the next connector's socket.

    The user's own clients may connect; with ``experiments`` (a name prefix, for
    a user's token) so may the executors of the user's experiments whose names
    start with it. An executor's listener is reached from its own experiment only.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        name: str,
        timeout: float = 10.0,
        experiments: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        self.name = name
        self.timeout = timeout
        path = f"/api/channels/listen/{quote(name, safe='')}"
        if experiments:
            path += f"?experiments={quote(experiments, safe='')}"
        self._ws = _open(endpoint, token, path, timeout)

    def accept(self) -> socket.socket:
        """Block until a connector arrives; raises ChannelError once the listener is closed."""
        try:
            conn_id = self._ws.recv()
        except (ConnectionClosed, OSError) as exc:
            raise ChannelError(f"channel {self.name!r} is closed: {exc}") from None
        if not isinstance(conn_id, str):
            raise ChannelError(f"channel {self.name!r}: unexpected frame")
        path = f"/api/channels/accept/{quote(conn_id, safe='')}"
        return _bridge(_open(self.endpoint, self.token, path, self.timeout))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ws.close()
