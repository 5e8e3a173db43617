"""Channels in the controller: grants for openers, and the relay for those that
cannot reach the node directly.

A grant names the channel (a fresh id), the opener (who asked: ``user:LOGIN``,
or ``user:LOGIN/deployment:ID`` for an executor, or ``node:NAME`` for an agent),
the node and endpoint, and carries a capability signed with that node's own
data key; the node's channel server checks it on the direct path.

On the relay path the opener opens ``/api/channels/relay`` with its bearer
token (a node: its node credential) and sends its ``Open``. The controller
checks that the token stands for the opener the capability names and that the
capability is good for that node, then tells the node (``ChannelOffer`` on its
agent WebSocket) to open ``/api/channels/target/{ticket}``. The node checks the Open again, answers,
and from then on the controller forwards frames both ways without decoding
them. When both ends ask for it (the WebSocket subprotocol
``STREAM_SUBPROTOCOL``, as every end of this release does), the WebSockets end
with the ``Open`` and the controller splices the two connections' bytes
(:mod:`shoal.controller.relay_splice`); otherwise it forwards WebSocket
messages. What it holds per channel is bounded by the channel's credit window
(end to end) and the connections' write buffers. When either side's connection
drops, the other's is closed (with WebSocket messages, after a ``Close``
marked ``lost``).

The controller opens channels itself too (opener ``controller``, e.g. to read a
graph object a client fetches): always by way of a ChannelOffer, as for a
relayed channel, but it is the end itself (:meth:`ChannelService.open_here`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.channel.aio import AsyncChannel
from shoal.channel.connect import STREAM_SUBPROTOCOL
from shoal.channel.errors import ChannelError, ChannelRefused, ChannelTimeout
from shoal.channel.flow import DEFAULT_WINDOW, Window
from shoal.channel.handshake import open_on, open_request
from shoal.channel.transport import Sendable, joined
from shoal.controller.auth import Authenticator, Principal
from shoal.controller.registry import NodeRegistry
from shoal.controller.relay_splice import HandOver, Splice, hand_over_of
from shoal.protocol import capabilities
from shoal.protocol import channel_messages as cm
from shoal.protocol.agent_messages import ChannelOffer, CloseChannels

log = logging.getLogger("shoal.controller.channels")

# Says why ``caller`` may not open a channel to ``endpoint`` on ``node`` ("": it may).
Guard = Callable[[Principal, str, str], Awaitable[str]]

GRANT_TTL = 60.0  # seconds a grant may be used to open its channel
OPEN_TIMEOUT = 10.0  # for the opener's first frame, and for the node to take the channel
TOKENS_SWEEP = 1024  # tokens remembered before the revoked and expired ones are swept
CONTROLLER = "controller"  # the opener of the channels the controller opens itself


def opener_of(caller: Principal) -> str:
    """The identity a channel capability names for ``caller``."""
    if caller.kind == "executor":
        return f"user:{caller.login}/deployment:{caller.deployment_id}"
    return f"user:{caller.login}"


def node_opener(name: str) -> str:
    """The identity a channel capability names for the agent of node ``name``."""
    return f"node:{name}"


@dataclass(eq=False)
class _Offer:
    """A relayed channel waiting for its node to take it."""

    node: str
    stream: bool = False  # the opener speaks frames on its connection: the node must too
    taken: asyncio.Future[WebSocket] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _TokenChannels:
    """The nodes one token was granted channels to, registered with the
    Authenticator as a WebSocket is: revoking the token "closes" this, which has
    those nodes close every channel whose capability carries the token's tag,
    direct ones included (relayed ones also end with the relay's WebSocket)."""

    def __init__(self, registry: NodeRegistry, tag: str, expires_at: float | None) -> None:
        self.registry = registry
        self.tag = tag
        self.expires_at = expires_at
        self.nodes: set[str] = set()
        self.application_state = WebSocketState.CONNECTED

    def ended(self, now: float) -> bool:
        """Revoked, or its token has expired: no grant under it can come again."""
        return self.application_state != WebSocketState.CONNECTED or (
            self.expires_at is not None and self.expires_at < now
        )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.application_state = WebSocketState.DISCONNECTED
        why = f"the token it was opened with was revoked ({reason or code})"
        for node in self.nodes:
            link = self.registry.link(node)
            if link is not None:
                link.send(CloseChannels(token=self.tag, reason=why))


class ChannelService:
    """Issues channel grants and relays the channels whose opener cannot reach the
    node. ``key_of(node)`` is the node's data key (the one its Welcome carried);
    ``tls``: the controller runs TLS, so no grant sends anyone direct;
    ``node_of(secret)``: the node whose credential ``secret`` is (None: none),
    so that agents may open channels through the relay too."""

    def __init__(
        self,
        auth: Authenticator,
        registry: NodeRegistry,
        key_of: Callable[[str], bytes],
        tls: bool,
        ttl: float = GRANT_TTL,
        node_of: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.auth = auth
        self.registry = registry
        self.key_of = key_of
        self.node_of = node_of
        self.tls = tls
        self.ttl = ttl
        self._addresses: dict[str, str] = {}  # node -> host:port of its channel server
        self._offers: dict[str, _Offer] = {}
        self._guards: dict[str, Guard] = {}
        self._tokens: dict[str, _TokenChannels] = {}  # token digest ->
        self._sweep_tokens_at = TOKENS_SWEEP
        # Since start, for /metrics and tests.
        self.granted = 0
        self.relayed = 0
        self.open_relays = 0
        self.relayed_messages = 0
        self.relayed_bytes = 0
        self.zero_copy_bytes = 0  # of relayed_bytes, moved in the kernel

    # --- grants ------------------------------------------------------------------

    def node_hello(self, name: str, address: str) -> None:
        """Node ``name`` (re)connected; its channel server is at ``address`` ("": none)."""
        if address:
            self._addresses[name] = address
        else:
            self._addresses.pop(name, None)

    def guard(self, endpoint: str, check: Guard) -> None:
        """Grants for ``endpoint`` (and ``endpoint/SCOPE``) need ``check`` to pass:
        the service behind an endpoint decides who may open it."""
        self._guards[endpoint] = check

    async def grant_for(self, caller: Principal, node: str, endpoint: str) -> cm.ChannelGrant | str:
        """A grant for ``caller``, or why its endpoint's guard refuses one. The
        channel closes, wherever it went, when the caller's token is revoked."""
        check = self._guards.get(endpoint.partition("/")[0])
        refused = await check(caller, node, endpoint) if check is not None else ""
        if refused:
            return refused
        tag = ""
        if caller.digest:
            tag = capabilities.token_tag(caller.digest)
            watched = self._tokens.get(caller.digest)
            if watched is None or watched.application_state != WebSocketState.CONNECTED:
                self._sweep_tokens()
                watched = _TokenChannels(self.registry, tag, caller.expires_at)
                self._tokens[caller.digest] = watched
                self.auth.opened(watched, caller)  # type: ignore[arg-type]
            watched.nodes.add(node)
        return self.grant(opener_of(caller), node, endpoint, token=tag)

    def _sweep_tokens(self) -> None:
        # Every executor token (one per deployment) and every login leaves an
        # entry; without this the map grows for as long as the controller runs.
        if len(self._tokens) < self._sweep_tokens_at:
            return
        now = time.time()
        self._tokens = {d: t for d, t in self._tokens.items() if not t.ended(now)}
        self._sweep_tokens_at = max(TOKENS_SWEEP, 2 * len(self._tokens))

    def grant(
        self, opener: str, node: str, endpoint: str, ttl: float | None = None, token: str = ""
    ) -> cm.ChannelGrant:
        """A grant for ``opener`` to open a new channel to ``endpoint`` on ``node``
        within ``ttl`` seconds (default: the service's); ``token``: the tag of the
        token it is granted to (see :func:`capabilities.token_tag`)."""
        channel = secrets.token_hex(12)
        expires = round(time.time() + (self.ttl if ttl is None else ttl), 3)
        claim = capabilities.ChannelClaim(channel, opener, node, endpoint, expires, token)
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
        caller, identity, refusal = await self._caller(ws)
        hand_over = _stream_hand_over(ws)
        await ws.accept(subprotocol=STREAM_SUBPROTOCOL if hand_over else None)
        try:
            body = await asyncio.wait_for(ws.receive_bytes(), OPEN_TIMEOUT)
            request: object = cm.decode(body)
        except (TimeoutError, WebSocketDisconnect, KeyError, RuntimeError):
            await _close(ws)
            return
        except (msgspec.DecodeError, msgspec.ValidationError):
            request = None
        if hand_over is not None:
            try:
                # The opener reads frames from now on, even a refusal.
                splice = Splice(self, f"{identity or 'the opener'}", hand_over)
            except RuntimeError:
                await _close(ws)  # it sent more than its Open
                return
            try:
                await self._relay_stream(splice, caller, identity, refusal, request, body)
            finally:
                await splice.finished()
            return
        if not isinstance(request, cm.Open):
            await _refuse(ws, "a channel must start with Open")
            return
        reason = refusal or self._check(identity, request)
        if reason:
            log.warning("refused channel %s to %s: %s", request.channel, request.node, reason)
            await _refuse(ws, reason)
            return
        if caller is not None:
            self.auth.opened(ws, caller)
        try:
            target, offer = await self._offer(request.node, request.channel)
        except ChannelError as exc:
            await _refuse(ws, str(exc))
            return
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

    async def _relay_stream(
        self,
        splice: Splice,
        caller: Principal | None,
        identity: str,
        refusal: str,
        request: object,
        body: bytes,
    ) -> None:
        """The rest of :meth:`relay` for an opener whose connection is spliced."""
        if not isinstance(request, cm.Open):
            splice.refuse("a channel must start with Open")
            return
        reason = refusal or self._check(identity, request)
        if reason:
            log.warning("refused channel %s to %s: %s", request.channel, request.node, reason)
            splice.refuse(reason)
            return
        if caller is not None:
            self.auth.opened(splice, caller)  # type: ignore[arg-type]
        try:
            target, offer = await self._offer(request.node, request.channel, stream=True)
        except ChannelError as exc:
            splice.refuse(str(exc))
            return
        self.relayed += 1
        self.open_relays += 1
        try:
            # The node's agent reads the Open as a WebSocket message, then frames.
            await target.send_bytes(body)
            hand_over = hand_over_of(target)
            assert hand_over is not None  # target() accepted it as a stream
            splice.join(f"node {request.node}", hand_over)
            await splice.ended.wait()
        except (WebSocketDisconnect, RuntimeError):
            await _close(target)
        finally:
            self.open_relays -= 1
            offer.done.set()

    async def _caller(self, ws: WebSocket) -> tuple[Principal | None, str, str]:
        """Who the WebSocket's bearer token stands for: ``(principal, identity,
        refusal)``; a user or executor, or a node (no principal) by its credential."""
        scheme, _, token = ws.headers.get("authorization", "").partition(" ")
        token = token.strip()
        missing = "the relay needs a valid bearer token"
        if scheme.lower() != "bearer" or not token:
            return None, "", missing
        caller = await self.auth.resolve(token)
        if caller is not None:
            if caller.kind not in ("user", "executor"):
                return None, "", f"a {caller.kind} token cannot open channels"
            return caller, opener_of(caller), ""
        node = await self.node_of(token) if self.node_of is not None else None
        if node is None:
            return None, "", missing
        return None, node_opener(node), ""

    async def _offer(
        self, node: str, channel: str, stream: bool = False
    ) -> tuple[WebSocket, _Offer]:
        """Tell ``node`` to take ``channel`` here; its WebSocket once it has
        (``stream``: one that is handed over after the Open, see relay_splice)."""
        link = self.registry.link(node)
        if link is None:
            raise ChannelError(f"node {node} is not connected to the controller", peer=node)
        ticket = secrets.token_urlsafe(24)
        offer = _Offer(node, stream)
        self._offers[ticket] = offer
        try:
            link.send(ChannelOffer(channel=channel, ticket=ticket))
            return await asyncio.wait_for(offer.taken, OPEN_TIMEOUT), offer
        except TimeoutError:
            raise ChannelTimeout(
                f"node {node} did not take the channel in time", peer=node
            ) from None
        finally:
            self._offers.pop(ticket, None)

    async def open_here(
        self, node: str, endpoint: str, *, window: Window = DEFAULT_WINDOW
    ) -> AsyncChannel:
        """A channel from the controller itself to ``endpoint`` on ``node`` (over the
        node's own connection to us, so it works wherever the node is)."""
        grant = self.grant(CONTROLLER, node, endpoint)
        request = open_request(grant, window)
        ws, offer = await self._offer(node, grant.channel)
        transport = _TargetTransport(ws, offer)
        try:
            return await open_on(transport, request, path="relay", window=window)
        except BaseException:
            await transport.close()
            raise

    def _check(self, identity: str, request: cm.Open) -> str:
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
        stream = offer.stream and _stream_hand_over(ws) is not None
        await ws.accept(subprotocol=STREAM_SUBPROTOCOL if stream else None)
        if offer.stream and not stream:
            if not offer.taken.done():
                offer.taken.set_exception(
                    ChannelRefused(
                        f"the agent of node {offer.node} cannot take relayed channels "
                        "from this client (its shoal is older): upgrade it",
                        peer=offer.node,
                    )
                )
            await _close(ws)
            return
        offer.taken.set_result(ws)
        await offer.done.wait()  # the opener's handler relays meanwhile


class _TargetTransport:
    """Channel frames over the node's side of a relayed channel, for a channel the
    controller itself opened (:meth:`ChannelService.open_here`)."""

    def __init__(self, ws: WebSocket, offer: _Offer) -> None:
        self.ws = ws
        self.offer = offer

    async def read(self) -> list[bytes] | None:
        try:
            message = await self.ws.receive()
        except RuntimeError as exc:
            raise ConnectionError(str(exc)) from None
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:
            raise ConnectionError("a text message where channel frames were expected")
        return [data]

    async def send(self, bodies: list[Sendable]) -> None:
        try:
            for body in bodies:
                await self.ws.send_bytes(bytes(joined(body)))
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ConnectionError(f"the node's connection ended: {exc}") from None

    async def close(self) -> None:
        await _close(self.ws)
        self.offer.done.set()  # ends target(), which holds the node's WebSocket open


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


def _stream_hand_over(ws: WebSocket) -> HandOver | None:
    """How to take ``ws``'s connection over if its peer asked to speak frames on it."""
    if STREAM_SUBPROTOCOL not in ws.scope.get("subprotocols", ()):
        return None
    return hand_over_of(ws)


async def _refuse(ws: WebSocket, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.send_bytes(cm.encode(cm.Refuse(reason)))
    await _close(ws)


async def _close(ws: WebSocket) -> None:
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await ws.close()


__all__ = ["CONTROLLER", "ChannelService", "node_opener", "opener_of"]
