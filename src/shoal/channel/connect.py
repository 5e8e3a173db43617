"""Where a channel goes: the one place that chooses between direct and relay.

The opener asks the controller for a grant (``POST /api/channels``): the
channel's id, a capability for exactly this opener, node and endpoint, and the
node's direct addresses unless the direct path is ruled out (the controller
runs TLS, so plain TCP would carry what TLS protects; or the node serves no
channels). It then tries each direct address with a short timeout and, if none
answers, goes through the controller's relay (a WebSocket, TLS when the
controller is). A refusal is final on either path: the other is not tried.

On the relay path the WebSocket carries only the handshake and the ``Open``
when the controller agrees (the subprotocol :data:`STREAM_SUBPROTOCOL`): then
the connection carries channel frames as a direct one does, and the controller
splices the bytes through to the node, which does the same on its side.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from shoal.channel.aio import AsyncChannel
from shoal.channel.errors import (
    ChannelError,
    ChannelRefused,
    ChannelTimeout,
    ChannelUnavailable,
)
from shoal.channel.flow import DEFAULT_WINDOW, Window
from shoal.channel.handshake import OPEN_TIMEOUT, open_on, open_request
from shoal.channel.transport import (
    WEBSOCKET_OPTIONS,
    StreamTransport,
    WebSocketTransport,
)
from shoal.protocol import channel_messages as cm

GRANT_PATH = "/api/channels"
RELAY_PATH = "/api/channels/relay"
DIRECT_TIMEOUT = 1.0  # seconds to reach a node directly before the relay is tried
# Asked for by both ends of a relayed channel: after the Open the connection
# carries length-prefixed frames, not WebSocket messages.
STREAM_SUBPROTOCOL = "shoal.channel.stream"
# A relay WebSocket: no keepalive pings, which would land in the frame stream
# (a channel notices a dead peer by its connection, as on the direct path).
RELAY_WEBSOCKET: dict[str, Any] = {
    **WEBSOCKET_OPTIONS,
    "subprotocols": [STREAM_SUBPROTOCOL],
    "ping_interval": None,
}


def relay_stream(ws: ClientConnection, pending: list[bytes] | None = None) -> StreamTransport:
    """Channel frames over relay WebSocket ``ws``'s connection, which the controller
    splices (``ws.subprotocol`` is STREAM_SUBPROTOCOL), once the last WebSocket
    message went (the opener's Open) or came (the node's: ``pending``)."""
    return StreamTransport.adopt(ws.transport, list(pending or []))


def ws_url(controller: str, path: str) -> str:
    """The WebSocket URL of ``path`` on the controller at ``controller`` (http[s]://)."""
    base = controller.rstrip("/")
    base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base + path


async def request_grant(
    controller: str, token: str, node: str, endpoint: str, timeout: float = OPEN_TIMEOUT
) -> cm.ChannelGrant:
    """Ask the controller for a channel to ``endpoint`` on ``node``."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.post(
                controller.rstrip("/") + GRANT_PATH,
                json={"node": node, "endpoint": endpoint},
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        raise ChannelUnavailable(f"cannot reach the controller at {controller}: {exc}") from None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        # 409: the node is not online (yet: its agent may be reconnecting); 5xx: the
        # controller cannot answer now. Both may pass; a refusal stands.
        unavailable = response.status_code == 409 or response.status_code >= 500
        raise (ChannelUnavailable if unavailable else ChannelRefused)(
            f"the controller refused a channel to {endpoint!r} on node {node}: {detail}",
            peer=node,
        )
    try:
        return msgspec.convert(response.json(), cm.ChannelGrant)
    except (ValueError, msgspec.ValidationError) as exc:
        raise ChannelError(f"the controller sent a malformed channel grant: {exc}") from None


async def open_channel(
    grant: cm.ChannelGrant,
    *,
    controller: str,
    token: str,
    window: Window = DEFAULT_WINDOW,
    direct_timeout: float = DIRECT_TIMEOUT,
    timeout: float = OPEN_TIMEOUT,
) -> AsyncChannel:
    """Open the channel ``grant`` describes, directly if the node can be reached,
    else through the controller (``token``: the opener's bearer token there)."""
    request = open_request(grant, window)
    if grant.direct:
        for address in grant.addresses:
            try:
                async with asyncio.timeout(direct_timeout):
                    transport = await StreamTransport.connect(address)
            except (OSError, TimeoutError, ValueError):
                continue  # not reachable from here (NAT, firewall): try the next way
            return await open_on(transport, request, path="direct", window=window, timeout=timeout)
    try:
        ws = await ws_connect(
            ws_url(controller, RELAY_PATH),
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=timeout,
            **RELAY_WEBSOCKET,
        )
    except InvalidStatus as exc:
        raise ChannelRefused(
            f"the controller's relay refused the channel to node {grant.node}: "
            f"HTTP {exc.response.status_code}",
            peer=grant.node,
        ) from None
    except TimeoutError:
        raise ChannelTimeout(
            f"the controller's relay did not answer within {timeout:g} s", peer=grant.node
        ) from None
    except (OSError, InvalidHandshake) as exc:
        raise ChannelUnavailable(
            f"cannot reach the controller's relay at {controller}: {exc}", peer=grant.node
        ) from None
    if ws.subprotocol != STREAM_SUBPROTOCOL:
        return await open_on(
            WebSocketTransport(ws), request, path="relay", window=window, timeout=timeout
        )
    try:
        await ws.send(cm.encode(request))
    except ConnectionClosed as exc:
        raise ChannelError(
            f"the controller's relay closed the channel to node {grant.node}: {exc}",
            peer=grant.node,
        ) from None
    return await open_on(
        relay_stream(ws), request, path="relay", window=window, timeout=timeout, sent=True
    )


async def connect(
    controller: str,
    token: str,
    node: str,
    endpoint: str,
    *,
    window: Window = DEFAULT_WINDOW,
    timeout: float = OPEN_TIMEOUT,
) -> AsyncChannel:
    """A channel to ``endpoint`` on ``node``: a grant from the controller, then the
    way there (direct or relay; the caller need not know which)."""
    grant = await request_grant(controller, token, node, endpoint, timeout)
    return await open_channel(
        grant, controller=controller, token=token, window=window, timeout=timeout
    )


__all__ = [
    "RELAY_WEBSOCKET",
    "STREAM_SUBPROTOCOL",
    "connect",
    "open_channel",
    "relay_stream",
    "request_grant",
    "ws_url",
]
