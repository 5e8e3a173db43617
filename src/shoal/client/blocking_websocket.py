"""A WebSocket client connection that the calling thread reads and writes itself."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.proxy import get_proxy, parse_proxy
from websockets.sync.client import connect_http_proxy, connect_socks_proxy
from websockets.sync.utils import Deadline
from websockets.uri import WebSocketURI, parse_uri

from shoal.protocol.framing import ReceiveBuffer

CLOSE_TIMEOUT = 2.0  # seconds to wait for the server's answer to our close
# An idle connection is kept alive by the kernel (NATs on the way forget silent
# ones) and a dead peer is found within about a minute, with no thread of ours.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 20, 10, 4

__all__ = ["BlockingWebSocket"]


class BlockingWebSocket:
    """websockets' sans-I/O client protocol on a blocking socket, driven by its caller.

    websockets' own synchronous client reads in a background thread and hands
    each message over to the caller's thread; for a client that waits for one
    reply after another, that hand-off was most of its cost (about 80 µs of CPU
    per round trip on the development VM). Here the caller's thread reads the
    socket itself, so a Ctrl-C interrupts a wait at once and closing never waits
    on another thread. A ping from the server is answered at the next read.

    Not thread-safe: one thread uses a connection at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        open_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Connect and do the opening handshake within ``open_timeout`` seconds.

        Raises :class:`OSError` (``TimeoutError`` included) when the server cannot
        be reached or does not answer in time, and
        :class:`~websockets.exceptions.InvalidHandshake` when it refuses the upgrade."""
        uri = parse_uri(url)
        deadline = time.monotonic() + open_timeout
        sock = _open_socket(uri, open_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keep_alive(sock)
            if uri.secure:
                context = ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=uri.host)
            self._sock: socket.socket = sock
            self._received = ReceiveBuffer()
            self._timeout: float | None = open_timeout
            self._protocol = ClientProtocol(uri, max_size=None)
            self._messages: deque[bytes | str] = deque()
            self._fragments: list[bytes] = []
            self._fragment_text = False
            request = self._protocol.connect()
            for name, value in (headers or {}).items():
                request.headers[name] = value
            self._protocol.send_request(request)
            self._write_out()
            self._handshake(deadline)
        except BaseException:
            sock.close()
            raise

    def _handshake(self, deadline: float) -> None:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the server did not answer the WebSocket upgrade in time")
            self._set_timeout(remaining)
            data = self._received.recv(self._sock)
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            events = self._protocol.events_received()
            if not events:
                if not data:
                    raise ConnectionError("the server closed the connection during the upgrade")
                continue
            response, frames = events[0], events[1:]
            if self._protocol.handshake_exc is not None:
                raise self._protocol.handshake_exc
            if not isinstance(response, Response):  # pragma: no cover - websockets' contract
                raise InvalidHandshake("no answer to the WebSocket upgrade")
            self._take(frames)
            return

    # --- use ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send one binary message (blocks until the kernel took all of it)."""
        if self._protocol.state is not State.OPEN:
            raise self._protocol.close_exc
        self._protocol.send_binary(data)
        self._write_out()

    def recv(self, timeout: float | None = None) -> bytes | str:
        """The next message; :class:`TimeoutError` when none came within ``timeout``
        seconds (0: only one that is here already), websockets' ``ConnectionClosed`` once
        the connection ended."""
        messages = self._messages
        while not messages:
            if self._protocol.state is State.CLOSED:
                raise self._protocol.close_exc
            self._set_timeout(timeout)
            try:
                data = self._received.recv(self._sock)
            except (BlockingIOError, ssl.SSLWantReadError):
                raise TimeoutError("no message yet") from None
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            self._take(self._protocol.events_received())
            self._write_out()  # pongs, and the answer to a close
            if not data and not messages:
                raise self._protocol.close_exc
        return messages.popleft()

    def close(self) -> None:
        """Close the connection: a close frame, the server's answer (for a moment),
        then the socket. Safe to call more than once and on a broken connection."""
        sock = self._sock
        if sock.fileno() < 0:
            return
        try:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(1000)
                self._write_out()
                deadline = time.monotonic() + CLOSE_TIMEOUT
                while self._protocol.state is not State.CLOSED:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._set_timeout(remaining)
                    data = self._received.recv(sock)
                    if not data:
                        break
                    self._protocol.receive_data(data)
                    self._protocol.events_received()
        except OSError:
            pass  # the peer is gone already: nothing to say goodbye to
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> BlockingWebSocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------------

    def _set_timeout(self, timeout: float | None) -> None:
        # Each change of a socket's timeout is a system call; most reads reuse one.
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout

    def _write_out(self) -> None:
        chunks = self._protocol.data_to_send()
        if not chunks:
            return
        self._set_timeout(None)  # a send blocks until the kernel took it all
        for chunk in chunks:
            if chunk:
                self._sock.sendall(chunk)
            else:  # the protocol's end of our side
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)

    def _take(self, events: list[object]) -> None:
        """Whole messages from the frames read (servers may fragment them)."""
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
                if frame.fin:
                    self._messages.append(
                        frame.data.decode() if opcode is Opcode.TEXT else bytes(frame.data)
                    )
                else:
                    self._fragments = [bytes(frame.data)]
                    self._fragment_text = opcode is Opcode.TEXT
            elif opcode is Opcode.CONT:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    whole = b"".join(self._fragments)
                    self._fragments = []
                    self._messages.append(whole.decode() if self._fragment_text else whole)


def _open_socket(uri: WebSocketURI, timeout: float) -> socket.socket:
    """A TCP connection to the server, through the proxy the environment names for
    it (``https_proxy``, ``no_proxy``...), as websockets' own clients make it."""
    proxy = get_proxy(uri)
    if proxy is None:
        return socket.create_connection((uri.host, uri.port), timeout=timeout)
    parsed = parse_proxy(proxy)
    if parsed.scheme.startswith("socks"):
        sock = connect_socks_proxy(parsed, uri, Deadline(timeout))  # needs python-socks
    else:
        sock = connect_http_proxy(parsed, uri, Deadline(timeout))
    sock.settimeout(timeout)
    return sock


def _keep_alive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        if hasattr(socket, option):  # Linux has all three; macOS names them differently
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
