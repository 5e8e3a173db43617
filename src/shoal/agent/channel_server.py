"""The agent's channel server: where channels to this node's endpoints arrive.

One per agent. Direct channels arrive on its TCP listener (bound where the
agent's ``--data-address`` says); relayed ones arrive as a WebSocket the agent
opens to the controller when told to (``ChannelOffer``). Both start with an
``Open``, checked here with this node's data key: the capability must be for
this node, the endpoint asked for, the opener named, and unexpired. The
channel then goes to the handler registered for the endpoint.

A handler is an async function that gets the open :class:`AsyncChannel` (its
``peer`` is the opener's identity) and owns it until it returns; the server
closes it then. An executor serves endpoints of its own through
:meth:`ChannelServer.forward`: their channels are checked here, then handed
to it (:mod:`shoal.channel.handover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from shoal.channel.aio import AsyncChannel, close_quietly
from shoal.channel.connect import RELAY_WEBSOCKET, STREAM_SUBPROTOCOL, relay_stream
from shoal.channel.errors import ChannelError
from shoal.channel.handshake import OPEN_TIMEOUT, accept_on, read_open
from shoal.channel.transport import (
    StreamTransport,
    Transport,
    WebSocketTransport,
)
from shoal.protocol import capabilities
from shoal.protocol import channel_messages as cm

if TYPE_CHECKING:
    from shoal.channel.handover import ExecutorEndpoints

log = logging.getLogger("shoal.agent.channels")

Handler = Callable[[AsyncChannel], Awaitable[None]]


class ChannelServer:
    """Accepts channels to this node and runs their endpoints' handlers.

    ``key_of`` gives this node's data key and the controller's clock minus ours
    (capabilities expire by the controller's clock).
    """

    def __init__(self, node: str, key_of: Callable[[], tuple[bytes, float]]) -> None:
        self.node = node
        self._key_of = key_of
        self._handlers: dict[str, Handler] = {}
        self._forwards: dict[str, ExecutorEndpoints] = {}
        self.server: asyncio.Server | None = None
        self.host = ""
        self.port = 0
        self._running: set[asyncio.Task[None]] = set()
        # Channels open here whose capability carries a token's tag (-> the tag),
        # and the executors channels were handed to: a revoked token's channels
        # are closed wherever they are (close_token).
        self._tagged: dict[AsyncChannel, str] = {}
        self._executors: weakref.WeakSet[ExecutorEndpoints] = weakref.WeakSet()

    def register(self, endpoint: str, handler: Handler) -> None:
        """Serve ``endpoint`` with ``handler`` (one per name). A name that ends in
        "/" serves every endpoint under it (one per graph object, one per run's
        commands); the handler reads which from ``channel.endpoint``."""
        if endpoint in self._handlers:
            raise ValueError(f"endpoint {endpoint!r} is served already")
        self._handlers[endpoint] = handler

    def _handler(self, endpoint: str) -> Handler | None:
        handler = self._handlers.get(endpoint)
        if handler is None and "/" in endpoint:
            handler = self._handlers.get(endpoint[: endpoint.index("/") + 1])
        return handler

    def forward(self, endpoint: str, executor: ExecutorEndpoints) -> str:
        """Hand ``endpoint``'s channels to ``executor``; the reason if it cannot be."""
        if endpoint in self._handlers or endpoint in self._forwards:
            return f"endpoint {endpoint!r} is served already on node {self.node}"
        self._forwards[endpoint] = executor
        self._executors.add(executor)
        return ""

    def unforward(self, endpoint: str, executor: ExecutorEndpoints) -> None:
        """``executor`` serves ``endpoint`` no more."""
        if self._forwards.get(endpoint) is executor:
            del self._forwards[endpoint]

    async def start(self, host: str) -> int:
        """Listen on ``host`` (a free port); the port."""
        self.close()
        self.server = await StreamTransport.serve(self._direct, host)
        self.host = host
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        """Stop listening (channels already open go on until their handlers end)."""
        if self.server is not None:
            self.server.close()
            self.server = None
            self.port = 0

    async def stop(self) -> None:
        """Stop listening and end every channel being served."""
        self.close()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def close_token(self, tag: str, reason: str, tg: asyncio.TaskGroup) -> None:
        """Close every channel opened here with the token tagged ``tag`` (it was
        revoked), saying ``reason``; executors close those handed to them."""
        for channel, channel_tag in list(self._tagged.items()):
            if channel_tag == tag:
                tg.create_task(close_quietly(channel, reason))
        for executor in list(self._executors):
            executor.close_token(tag, reason)

    async def _direct(self, transport: StreamTransport) -> None:
        await self._serve(transport, "direct")

    async def take_relayed(self, url: str) -> None:
        """Take a channel the controller relays: open ``url`` (the offer's target)."""
        try:
            ws = await ws_connect(url, open_timeout=10, **RELAY_WEBSOCKET)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            log.info("could not take a relayed channel: %s", exc)
            return
        transport: Transport = WebSocketTransport(ws)
        if ws.subprotocol == STREAM_SUBPROTOCOL:
            # The Open is the one WebSocket message; channel frames follow it.
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    first = await ws.recv(decode=False)
            except (ConnectionClosed, TimeoutError) as exc:
                log.info("a relayed channel did not open: %s", exc)
                await transport.close()
                return
            transport = relay_stream(ws, [first])
        await self._serve(transport, "relay")

    async def _serve(self, transport: Transport, path: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await self._run(transport, path)
        except Exception:
            # Whatever went wrong with one channel must not reach the agent's tasks.
            log.exception("serving a %s channel failed", path)
        finally:
            self._running.discard(task)

    async def _run(self, transport: Transport, path: str) -> None:
        try:
            request = await read_open(transport)
            executor = self._forwards.get(request.endpoint)
            if executor is not None:
                await self._hand_on(executor, transport, request, path)
                return
            channel = await accept_on(transport, request, path=path, check=self._check)
        except ChannelError as exc:
            log.info("a channel did not open: %s", exc)
            await transport.close()
            return
        if channel is None:
            return
        handler = self._handler(request.endpoint)
        assert handler is not None  # _check refused endpoints without one
        tag = capabilities.token_of(request.capability)
        if tag:
            self._tagged[channel] = tag
        try:
            await handler(channel)
            await channel.close()
        except ChannelError as exc:
            log.info("channel %s (%s) from %s ended: %s", channel.id, path, channel.peer, exc)
        except Exception as exc:
            # A handler's bug ends its channel, with the reason, never the agent.
            log.exception("endpoint %r failed", request.endpoint)
            with contextlib.suppress(ChannelError):
                await channel.close(f"endpoint {request.endpoint!r} failed: {exc!r}"[:500])
        finally:
            self._tagged.pop(channel, None)
            await channel.aclose()

    async def _hand_on(
        self, executor: ExecutorEndpoints, transport: Transport, request: cm.Open, path: str
    ) -> None:
        refused = self._check(request)
        if not refused:
            try:
                await executor.hand(transport, request, path)
                return
            except OSError as exc:
                refused = f"endpoint {request.endpoint!r} is gone: {exc}"
        with contextlib.suppress(OSError):
            await transport.send([cm.encode(cm.Refuse(refused))])
        await transport.close()

    def _check(self, request: cm.Open) -> str:
        if self._handler(request.endpoint) is None and request.endpoint not in self._forwards:
            return f"node {self.node} has no endpoint {request.endpoint!r}"
        key, offset = self._key_of()
        refused = capabilities.check_channel(
            key,
            request.capability,
            request.channel,
            request.opener,
            self.node,
            request.endpoint,
            time.time() + offset,
        )
        if refused:
            log.warning(
                "refused channel %s to %r from %s: %s",
                request.channel,
                request.endpoint,
                request.opener,
                refused,
            )
        return refused


__all__ = ["ChannelServer", "Handler"]
