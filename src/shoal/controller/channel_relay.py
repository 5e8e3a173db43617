"""Channels in the controller: grants for openers, and the relay for those that
cannot reach the node directly.

A grant names the channel (a fresh id), the opener (who asked: ``user:LOGIN``,
or ``user:LOGIN/deployment:ID`` for an executor, or ``node:NAME`` for an agent),
the node and endpoint, and carries a capability signed with that node's own
data key; the node's channel server checks it on the direct path.

On the relay path the opener opens ``/api/channels/relay`` with its bearer
token and sends its ``Open``. The controller checks that the token stands for
the opener the capability names and that the capability is good for that
node, then tells the node (``ChannelOffer`` on its agent WebSocket) to open
``/api/channels/target/{ticket}``. The node checks the Open again, answers,
and from then on the controller forwards frames both ways without decoding
them. What it holds per channel is bounded by the channel's credit window
(end to end) and the WebSocket queues. When either side's connection drops,
the other is told with a ``Close`` marked ``lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.controller.auth import Authenticator, Principal, bearer_of
from shoal.controller.registry import NodeRegistry
from shoal.protocol import capabilities
from shoal.protocol import channel_messages as cm
from shoal.protocol.agent_messages import ChannelOffer

log = logging.getLogger("shoal.controller.channels")

GRANT_TTL = 60.0  # seconds a grant may be used to open its channel
OPEN_TIMEOUT = 10.0  # for the opener's first frame, and for the node to take the channel


def opener_of(caller: Principal) -> str:
    """The identity a channel capability names for ``caller``."""
    if caller.kind == "executor":
        return f"user:{caller.login}/deployment:{caller.deployment_id}"
    return f"user:{caller.login}"


@dataclass(eq=False)
class _Offer:
    """A relayed channel waiting for its node to take it."""

    node: str
    taken: asyncio.Future[WebSocket] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ChannelService:
    """Issues channel grants and relays the channels whose opener cannot reach the
    node. ``key_of(node)`` is the node's data key (the one its Welcome carried);
    ``tls``: the controller runs TLS, so no grant sends anyone direct."""

    def __init__(
        self,
        auth: Authenticator,
        registry: NodeRegistry,
        key_of: Callable[[str], bytes],
        tls: bool,
        ttl: float = GRANT_TTL,
    ) -> None:
        self.auth = auth
        self.registry = registry
        self.key_of = key_of
        self.tls = tls
        self.ttl = ttl
        self._addresses: dict[str, str] = {}  # node -> host:port of its channel server
        self._offers: dict[str, _Offer] = {}
        # Since start, for /metrics and tests.
        self.granted = 0
        self.relayed = 0
        self.open_relays = 0
        self.relayed_messages = 0
        self.relayed_bytes = 0

    # --- grants ------------------------------------------------------------------

    def node_hello(self, name: str, address: str) -> None:
        """Node ``name`` (re)connected; its channel server is at ``address`` ("": none)."""
        if address:
            self._addresses[name] = address
        else:
            self._addresses.pop(name, None)

    def grant(self, opener: str, node: str, endpoint: str) -> cm.ChannelGrant:
        """A grant for ``opener`` to open a new channel to ``endpoint`` on ``node``."""
        channel = secrets.token_hex(12)
        expires = round(time.time() + self.ttl, 3)
        claim = capabilities.ChannelClaim(channel, opener, node, endpoint, expires)
        address = "" if self.tls else self._addresses.get(node, "")
        self.granted += 1
        return cm.ChannelGrant(
            channel=channel,
            capability=capabilities.sign_channel(self.key_of(node), claim),
            opener=opener,
            node=node,
            endpoint=endpoint,
            expires=expires,
            addresses=[address] if address else [],
            direct=bool(address),
        )

    # --- the relay -------------------------------------------------------------

    async def relay(self, ws: WebSocket) -> None:
        """The opener's side of a relayed channel."""
        caller = await bearer_of(ws, self.auth)
        await ws.accept()
        try:
            body = await asyncio.wait_for(ws.receive_bytes(), OPEN_TIMEOUT)
            request = cm.decode(body)
        except (TimeoutError, WebSocketDisconnect, KeyError, RuntimeError):
            await _close(ws)
            return
        except (msgspec.DecodeError, msgspec.ValidationError):
            await _refuse(ws, "a channel must start with Open")
            return
        if not isinstance(request, cm.Open):
            await _refuse(ws, "a channel must start with Open")
            return
        reason = self._check(caller, request)
        if reason:
            log.warning("refused channel %s to %s: %s", request.channel, request.node, reason)
            await _refuse(ws, reason)
            return
        if caller is not None:
            self.auth.opened(ws, caller)
        link = self.registry.link(request.node)
        if link is None:
            await _refuse(ws, f"node {request.node} is not connected to the controller")
            return
        ticket = secrets.token_urlsafe(24)
        offer = _Offer(request.node)
        self._offers[ticket] = offer
        try:
            link.send(ChannelOffer(channel=request.channel, ticket=ticket))
            target = await asyncio.wait_for(offer.taken, OPEN_TIMEOUT)
        except TimeoutError:
            await _refuse(ws, f"node {request.node} did not take the channel in time")
            return
        finally:
            self._offers.pop(ticket, None)
        self.relayed += 1
        self.open_relays += 1
        try:
            await target.send_bytes(body)  # the node checks the Open itself, and answers
            await _pump(ws, request.opener, target, f"node {request.node}", self)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.open_relays -= 1
            offer.done.set()

    def _check(self, caller: Principal | None, request: cm.Open) -> str:
        if caller is None:
            return "the relay needs a valid bearer token"
        if caller.kind not in ("user", "executor"):
            return f"a {caller.kind} token cannot open channels"
        identity = opener_of(caller)
        if request.opener != identity:
            return f"this token stands for {identity}, not {request.opener}"
        if request.node not in self.registry.nodes:
            return f"no node named {request.node!r}"
        return capabilities.check_channel(
            self.key_of(request.node),
            request.capability,
            request.channel,
            request.opener,
            request.node,
            request.endpoint,
            time.time(),
        )

    async def target(self, ws: WebSocket, ticket: str) -> None:
        """The node's side of a relayed channel: ``ticket`` came in its ChannelOffer
        (over its authenticated agent WebSocket) and is good once."""
        offer = self._offers.pop(ticket, None)
        if offer is None or offer.taken.done():
            await ws.close(code=4404, reason="no such channel offer")
            return
        await ws.accept()
        offer.taken.set_result(ws)
        await offer.done.wait()  # the opener's handler relays meanwhile


async def _pump(
    a: WebSocket, a_name: str, b: WebSocket, b_name: str, counts: ChannelService
) -> None:
    """Forward frames both ways until one side goes; then tell the other (a Close
    marked lost: it ignores it if the channel had ended cleanly) and close it."""

    async def forward(source: WebSocket, target: WebSocket) -> None:
        while True:
            message = await source.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                await target.send_bytes(data)
                counts.relayed_messages += 1  # frames (a frame may hold many messages)
                counts.relayed_bytes += len(data)

    lost: WebSocket | None = None
    gone = ""
    try:
        async with asyncio.TaskGroup() as tg:
            one = tg.create_task(forward(a, b))
            two = tg.create_task(forward(b, a))
            done, _ = await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
            survivor, gone = (b, a_name) if one in done else (a, b_name)
            for task in (one, two):
                task.cancel()
        lost = survivor
    except* (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if lost is not None:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await lost.send_bytes(cm.encode(cm.Close(f"connection to {gone} lost", lost=True)))
        for ws in (a, b):
            await _close(ws)


async def _refuse(ws: WebSocket, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.send_bytes(cm.encode(cm.Refuse(reason)))
    await _close(ws)


async def _close(ws: WebSocket) -> None:
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await ws.close()


__all__ = ["ChannelService", "opener_of"]
