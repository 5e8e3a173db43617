"""Endpoints served by an executor: the agent's channel server hands their channels on.

An agent has one channel server; an executor (a separate process, running a
user's steps) may serve endpoints of its own there, e.g. a dataflow job's
input pipes. The agent spawns the executor with one end of a ``SOCK_SEQPACKET``
socket pair (its fd in ``SHOAL_HANDOVER_FD``). Over it the executor asks to
serve an endpoint name (``["serve", name]``, answered ``["served", name,
reason]``, reason "" when granted), and the agent hands each channel opened
to that name across, after it checked the capability itself (the executor
never sees the node's data key):

- a direct channel's TCP connection goes as it is (its fd, ``SCM_RIGHTS``):
  the executor answers the ``Open`` and the bytes flow with no hop through the
  agent; so does a relayed one that the controller splices, unless it runs TLS;
- another relayed channel (WebSocket messages, or TLS) cannot be passed on:
  the agent hands over one end of a fresh socket pair and forwards frames
  between it and the connection without decoding them. The credit window is
  end to end, so the agent holds no more than its socket buffers.

Either way the executor gets ``["channel", open_body, path]`` with one fd and
accepts the channel on it with :func:`shoal.channel.handshake.accept_on`.
When a token is revoked the agent sends ``["close", tag, reason]``: the
executor closes the channels whose capability carries that token's tag.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from shoal.channel.aio import AsyncChannel, close_quietly
from shoal.channel.errors import ChannelError
from shoal.channel.handshake import accept_on
from shoal.channel.transport import StreamTransport, Transport
from shoal.protocol import capabilities
from shoal.protocol import channel_messages as cm

if TYPE_CHECKING:
    from shoal.agent.channel_server import ChannelServer

log = logging.getLogger("shoal.channel.handover")

ENV = "SHOAL_HANDOVER_FD"
MAX_MESSAGE = 64 * 1024
_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.decode


def handover_pair() -> tuple[socket.socket, socket.socket]:
    """(the agent's end, the executor's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class ExecutorEndpoints:
    """The agent's side of one executor's handover socket."""

    def __init__(self, sock: socket.socket, server: ChannelServer) -> None:
        self.sock = sock
        self.server = server
        self.endpoints: set[str] = set()
        sock.setblocking(False)

    async def serve(self) -> None:
        """Take the executor's requests until it goes; its endpoints go with it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    data = await loop.sock_recv(self.sock, MAX_MESSAGE)
                except OSError:
                    return
                if not data:
                    return
                try:
                    kind, name = _decode(data)
                except (msgspec.DecodeError, ValueError, TypeError):
                    log.warning("an executor sent a malformed endpoint request")
                    return
                if kind == "serve":
                    reason = self.server.forward(str(name), self)
                    if not reason:
                        self.endpoints.add(name)
                    await loop.sock_sendall(self.sock, _encode(["served", name, reason]))
                elif kind == "drop" and name in self.endpoints:
                    self.endpoints.discard(name)
                    self.server.unforward(name, self)
        finally:
            for name in self.endpoints:
                self.server.unforward(name, self)
            self.endpoints.clear()
            self.sock.close()

    async def hand(self, transport: Transport, request: cm.Open, path: str) -> None:
        """Hand an opened (and checked) channel to the executor; returns once it
        is the executor's (a relayed one: once it ended)."""
        body = _encode(["channel", cm.encode(request), path])
        if isinstance(transport, StreamTransport) and not transport.encrypted:
            sock = transport.socket
            try:
                self._send(body, sock.fileno())
            finally:
                # Our copy goes; the executor's keeps the connection open.
                await transport.close()
            return
        ours, theirs = socket.socketpair()
        try:
            self._send(body, theirs.fileno())
        except OSError:
            ours.close()
            await transport.close()
            raise
        finally:
            theirs.close()
        await _pump(transport, await StreamTransport.from_socket(ours))

    def close_token(self, tag: str, reason: str) -> None:
        """Have the executor close the channels opened with the token tagged ``tag``."""
        with contextlib.suppress(OSError):  # gone, and its channels with it
            self.sock.send(_encode(["close", tag, reason]))

    def _send(self, body: bytes, fd: int) -> None:
        # A few hundred bytes on a local socket: it does not block in practice.
        self.sock.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


async def _pump(a: Transport, b: Transport) -> None:
    """Forward frames both ways until either side ends; then close both."""

    async def forward(source: Transport, target: Transport) -> None:
        while (bodies := await source.read()) is not None:
            await target.send(bodies)

    try:
        async with asyncio.TaskGroup() as tg:
            one = tg.create_task(forward(a, b))
            two = tg.create_task(forward(b, a))
            await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
            one.cancel()
            two.cancel()
    except* OSError:
        pass
    finally:
        await a.close()
        await b.close()


Handler = Callable[[AsyncChannel], Awaitable[None]]


class EndpointHost:
    """The executor's side: serve endpoints of this node from this process.

    Lives on one event loop (``loop``); its methods are called on that loop.
    """

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self._handlers: dict[str, Handler] = {}
        self._answers: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tagged: dict[AsyncChannel, str] = {}  # channel -> its token's tag
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)

    _instances: dict[int, EndpointHost] = {}
    _lock = threading.Lock()

    @classmethod
    def of_process(cls, loop: asyncio.AbstractEventLoop) -> EndpointHost | None:
        """This executor's endpoint host on ``loop`` (one per process), or None when
        this process was not started by an agent that hands channels over."""
        fd = os.environ.get(ENV)
        if not fd:
            return None
        with cls._lock:
            host = cls._instances.get(id(loop))
            if host is None:
                host = cls._instances[id(loop)] = cls(socket.socket(fileno=int(fd)), loop)
            return host

    async def serve(self, endpoint: str, handler: Handler) -> None:
        """Serve ``endpoint`` on this node with ``handler`` (it gets each channel,
        whose ``peer`` is the opener); raises ChannelError if the agent refuses."""
        answer = self.loop.create_future()
        self._answers[endpoint] = answer
        self._handlers[endpoint] = handler
        self.sock.send(_encode(["serve", endpoint]))
        reason = await asyncio.wait_for(answer, 10)
        if reason:
            self._handlers.pop(endpoint, None)
            raise ChannelError(f"cannot serve {endpoint!r}: {reason}")

    def drop(self, endpoint: str) -> None:
        """Serve ``endpoint`` no more (channels already handed on go on)."""
        if self._handlers.pop(endpoint, None) is not None:
            with contextlib.suppress(OSError):
                self.sock.send(_encode(["drop", endpoint]))

    def _readable(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            self.loop.remove_reader(self.sock.fileno())
            for answer in self._answers.values():
                if not answer.done():
                    answer.set_result("the agent is gone")
            return
        message: list[Any] = _decode(data)
        if message[0] == "served":
            answer = self._answers.pop(message[1], None)
            if answer is not None and not answer.done():
                answer.set_result(message[2])
        elif message[0] == "channel" and fds:
            self._start(self._accept(cm.decode(message[1]), message[2], fds[0]))
        elif message[0] == "close":
            for channel, tag in list(self._tagged.items()):
                if tag == message[1]:
                    self._start(close_quietly(channel, message[2]))
        else:
            for fd in fds:
                os.close(fd)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, request: Any, path: str, fd: int) -> None:
        sock = socket.socket(fileno=fd)
        transport = await StreamTransport.from_socket(sock)
        handler = self._handlers.get(request.endpoint)
        try:
            channel = await accept_on(
                transport,
                request,
                path=path,
                # The agent checked the capability; the endpoint may have gone since.
                check=lambda r: "" if handler else f"endpoint {r.endpoint!r} is served no more",
            )
        except ChannelError as exc:
            log.info("a channel to %r did not open: %s", request.endpoint, exc)
            return
        if channel is None or handler is None:
            return
        tag = capabilities.token_of(request.capability)
        if tag:
            self._tagged[channel] = tag
        try:
            await handler(channel)
            await channel.close()
        except ChannelError as exc:
            log.info("channel %s from %s ended: %s", channel.id, channel.peer, exc)
        except Exception as exc:
            log.exception("endpoint %r failed", request.endpoint)
            with contextlib.suppress(ChannelError):
                await channel.close(f"endpoint {request.endpoint!r} failed: {exc!r}"[:500])
        finally:
            self._tagged.pop(channel, None)
            await channel.aclose()


__all__ = ["ENV", "EndpointHost", "ExecutorEndpoints", "handover_pair"]
