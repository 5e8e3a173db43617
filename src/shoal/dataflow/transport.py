"""Moving values between jobs: a listening server for inputs, a writer per output.

Each job host listens on a TCP port for its input pipes; each output pipe has
a writer thread that connects straight to the receiving job's host (agent to
agent; loopback on one node) and sends values in batches. Back-pressure: the
receiver stops reading a pipe while its job has ``capacity`` values waiting,
TCP then fills up, the writer's send blocks, its bounded buffer fills and the
producing job blocks in ``emit``. A pipe whose receiver is gone (a failover
in progress) drops values instead of blocking, so the rest of the network
keeps flowing; the writer reconnects when the coordinator sends a new route.

Connections start with the network's secret token (raw bytes, checked before
any pickle is read), then frames (:mod:`shoal.dataflow.wire`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoal.client.channels import connect_channel
from shoal.dataflow.pipes import BasePipe
from shoal.dataflow.wire import FrameSocket

log = logging.getLogger("shoal.dataflow")

TOKEN_BYTES = 32
RECONNECT_EVERY = 0.5
MAX_BUFFER_BYTES = 8 << 20
MAX_BATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class Route:
    """Where an output pipe's receiver listens now."""

    hosts: tuple[str, ...]
    port: int
    job: int
    generation: int
    relay: tuple[str, int] | None = field(default=None)


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


def open_connection(host: str, port: int, token: bytes, timeout: float = 5.0) -> FrameSocket:
    conn = FrameSocket.connect(host, port, timeout)
    conn.send_raw(token)
    return conn


def channel_name(token: bytes) -> str:
    """The controller channel on which a run's coordinator also listens."""
    return "dataflow-" + hashlib.sha256(token).hexdigest()[:32]


def open_via_controller(token: bytes, timeout: float = 5.0) -> FrameSocket:
    """Reach the coordinator through the controller's channel relay.

    For hosts that cannot reach the client (a laptop behind NAT): every executor
    reaches the controller, with the endpoint and token its agent gave it.
    """
    endpoint = os.environ.get("SHOAL_ENDPOINT")
    secret = os.environ.get("SHOAL_EXECUTOR_TOKEN")
    if not endpoint or not secret:
        raise ConnectionError("no SHOAL_ENDPOINT/SHOAL_EXECUTOR_TOKEN here to reach the controller")
    conn = FrameSocket(connect_channel(endpoint, secret, channel_name(token), timeout))
    conn.send_raw(token)
    return conn


class OutPipe:
    """The sending end of one pipe: a bounded buffer and a writer thread."""

    def __init__(
        self,
        pipe: BasePipe,
        token: bytes,
        capacity: int = 4096,
        coordinator_token: bytes | None = None,
    ) -> None:
        self.pipe = pipe
        self.token = token  # the receiving job host's data server takes it
        # The coordinator relays with a token of its own: the hosts' token does
        # not open the coordinator (docs/security.md).
        self.coordinator_token = coordinator_token if coordinator_token is not None else token
        self.capacity = capacity
        self._plain = pipe.transparent  # nothing to pack or encode: skip the calls
        self.dropped = 0
        self._batches = 0  # taken to send: finish() waits while this moves
        self._items: list[tuple[Any, ...]] = []
        self._bytes = 0  # of bytes and str values queued: large values bound the buffer too
        self._cond = threading.Condition()
        self._route: Route | None = None
        self._route_changed = False
        self._ending = False
        self._closed = False
        self._writer_waiting = False
        self._conn: FrameSocket | None = None
        self._last_attempt = 0.0
        self._thread = threading.Thread(target=self._write, name=f"pipe-{pipe.id}", daemon=True)
        self._thread.start()

    def set_route(self, route: Route | None) -> None:
        with self._cond:
            if route != self._route:
                self._route = route
                self._route_changed = True
                self._last_attempt = 0.0
                self._cond.notify_all()

    def put(self, key: Any, value: Any, head: int = 0) -> None:
        """Queue one value (blocks while the buffer is full and the receiver is slow).

        A non-zero FISSION ``head`` travels beside the value: ``(key, data, head)``.
        """
        data = value if self._plain else self.pipe.to_wire(value)
        size = len(data) if isinstance(data, bytes | str) else 0
        with self._cond:
            while (
                len(self._items) >= self.capacity or self._bytes >= MAX_BUFFER_BYTES
            ) and not self._closed:
                self._cond.wait()
            self._items.append((key, data, head) if head else (key, data))
            self._bytes += size
            if self._writer_waiting:
                self._cond.notify_all()

    def finish(self, timeout: float = 10.0) -> None:
        """Send what is queued, then tell the receiver this pipe ended.

        Waits as long as values keep leaving, however slow the receiver is; one
        that takes nothing for ``timeout`` seconds is given up on.
        """
        with self._cond:
            self._ending = True
            self._cond.notify_all()
        seen = -1
        while self._thread.is_alive() and self._batches != seen:
            seen = self._batches
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._conn is not None:
            self._conn.close()

    def _write(self) -> None:
        while True:
            with self._cond:
                while not (self._items or self._ending or self._closed or self._route_changed):
                    self._writer_waiting = True
                    self._cond.wait()
                self._writer_waiting = False
                if self._closed:
                    return
                batch = self._take_batch()
                self._batches += 1
                # A queue of large values leaves in several batches: the end
                # goes after the last of them, not after the first.
                ending = self._ending and not self._items
                if self._route_changed:
                    self._route_changed = False
                    self._drop_connection()
                self._cond.notify_all()  # room in the buffer again
            conn = self._connection()
            if conn is None:
                self.dropped += len(batch)
                if ending:
                    return
                continue
            try:
                if batch:
                    conn.send(("data", batch))
                if ending:
                    conn.send(("end",))
                    return
            except OSError as exc:
                log.info(
                    "pipe %s: receiver lost (%s); %d values dropped", self.pipe.id, exc, len(batch)
                )
                self.dropped += len(batch)
                self._drop_connection()

    def _take_batch(self) -> list[tuple[Any, ...]]:
        """What goes in the next frame: everything queued, or about MAX_BATCH_BYTES of it."""
        if self._bytes <= MAX_BATCH_BYTES:
            batch, self._items, self._bytes = self._items, [], 0
            return batch
        taken, size = 0, 0
        for item in self._items:
            data = item[1]
            taken += 1
            size += len(data) if isinstance(data, bytes | str) else 0
            if size >= MAX_BATCH_BYTES:
                break
        batch, self._items = self._items[:taken], self._items[taken:]
        self._bytes -= size
        return batch

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> FrameSocket | None:
        if self._conn is not None:
            return self._conn
        route = self._route
        now = time.monotonic()
        if route is None or now - self._last_attempt < RECONNECT_EVERY:
            if route is not None or not self._items:
                # Nothing to reach yet: wait a little for a route instead of spinning.
                with self._cond:
                    if not self._route_changed and not self._closed:
                        self._cond.wait(RECONNECT_EVERY)
            return None
        self._last_attempt = now
        hello = ("hello", self.pipe.id, route.job, route.generation)
        for host in route.hosts:
            try:
                conn = open_connection(host, route.port, self.token, timeout=2.0)
                conn.send(hello)
                conn.sock.settimeout(5.0)
                reply = conn.receive()
                conn.sock.settimeout(None)
            except (OSError, EOFError):
                continue
            if reply == "ok":
                self._conn = conn
                return conn
            conn.close()
        # Relayed by the coordinator over the receiver's control link: reached
        # directly if possible, else through the controller.
        for reach in (
            (lambda r=route.relay: open_connection(*r, self.coordinator_token, timeout=2.0))
            if route.relay is not None
            else None,
            lambda: open_via_controller(self.coordinator_token),
        ):
            if reach is None:
                continue
            try:
                conn = reach()
                conn.send(("relay", self.pipe.id, route.job, route.generation))
                self._conn = conn
                log.info("pipe %s: relayed through the coordinator", self.pipe.id)
                return conn
            except (OSError, ConnectionError):
                continue
        log.debug("pipe %s: cannot reach job %s at %s", self.pipe.id, route.job, route.hosts)
        return None


class DataServer:
    """Accepts the input pipes of one job host and hands their values to ``deliver``."""

    def __init__(
        self,
        token: bytes,
        job: int,
        generation: int,
        deliver: Callable[[int, list[tuple[Any, Any]]], None],
        end: Callable[[int], None],
        host: str = "0.0.0.0",
    ) -> None:
        self.token = token
        self.job = job
        self.generation = generation
        self.deliver = deliver
        self.end = end
        self._listener = socket.create_server((host, 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[FrameSocket] = []
        self._closed = False
        threading.Thread(target=self._accept, name=f"job-{job}-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        if not read_token(sock, self.token):
            sock.close()
            return
        conn = FrameSocket(sock)
        self._conns.append(conn)
        try:
            hello = conn.receive()
            if hello[:1] != ("hello",) or tuple(hello[2:]) != (self.job, self.generation):
                conn.send("wrong job")
                return
            pipe_id = hello[1]
            conn.send("ok")
            while True:
                message = conn.receive()
                if message[0] == "data":
                    self.deliver(pipe_id, message[1])
                elif message[0] == "end":
                    self.end(pipe_id)
                    return
        except (EOFError, OSError):
            return  # the sender went away; a failover will reconnect it
        finally:
            conn.close()

    def close(self) -> None:
        self._closed = True
        # close() alone does not wake the thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._conns:
            conn.close()
