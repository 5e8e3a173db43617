"""Channels: byte streams relayed by the controller between peers that cannot meet.

Every agent, executor and client reaches the controller; they may not reach each
other (NAT, firewalls). A *listener* opens ``/api/channels/listen/{name}``; a
*connector* opens ``/api/channels/connect/{name}``; the controller tells the
listener (a text frame with a connection id), the listener opens
``/api/channels/accept/{id}``, and from then on the binary frames of the two are
relayed both ways until either side closes. Names are per user: a user's
clients and the executors of that user's experiments share them, nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from dataclasses import dataclass, field

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.controller.auth import Authenticator, Principal, accept_user

log = logging.getLogger("shoal.controller.channels")

ACCEPT_TIMEOUT = 10.0  # seconds a connector waits for the listener to take it


@dataclass(eq=False)
class _Pending:
    """A connector waiting for its listener to accept, then for the relay to end."""

    accepted: asyncio.Future[WebSocket] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ChannelRelay:
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self._listeners: dict[tuple[int, str], WebSocket] = {}
        self._pending: dict[str, tuple[int, _Pending]] = {}
        self._ids = itertools.count(1)

    async def _accept(self, ws: WebSocket) -> Principal | None:
        return await accept_user(ws, self.auth, kinds=("user", "executor"))

    async def listen(self, ws: WebSocket, name: str) -> None:
        caller = await self._accept(ws)
        if caller is None:
            return
        key = (caller.user_id, name)
        if key in self._listeners:
            await ws.close(code=4409, reason=f"channel {name!r} already has a listener")
            return
        self._listeners[key] = ws
        try:
            while True:  # nothing to read; this notices the listener leaving
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            if self._listeners.get(key) is ws:
                del self._listeners[key]

    async def connect(self, ws: WebSocket, name: str) -> None:
        scheme, _, token = ws.headers.get("authorization", "").partition(" ")
        caller = await self.auth.resolve(token.strip()) if scheme.lower() == "bearer" else None
        listener = self._listeners.get((caller.user_id, name)) if caller is not None else None
        if listener is None:
            # Refused before the handshake completes: the connector's open fails at
            # once (403), instead of opening and then finding nobody there.
            await ws.close(code=4404, reason=f"nobody listens on channel {name!r}")
            return
        await ws.accept()
        conn_id = f"{next(self._ids)}-{secrets.token_hex(8)}"
        pending = _Pending()
        self._pending[conn_id] = (caller.user_id, pending)
        try:
            await listener.send_text(conn_id)
            other = await asyncio.wait_for(pending.accepted, ACCEPT_TIMEOUT)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            self._pending.pop(conn_id, None)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(code=4408, reason=f"channel {name!r}: the listener did not answer")
            return
        try:
            await _relay(ws, other)
        finally:
            pending.done.set()

    async def accept(self, ws: WebSocket, conn_id: str) -> None:
        caller = await self._accept(ws)
        if caller is None:
            return
        entry = self._pending.pop(conn_id, None)
        if entry is None or entry[0] != caller.user_id:
            await ws.close(code=4404, reason="no such connection")
            return
        pending = entry[1]
        pending.accepted.set_result(ws)
        # The connector's handler relays; this one keeps the socket open meanwhile.
        await pending.done.wait()


async def _relay(a: WebSocket, b: WebSocket) -> None:
    """Forward binary frames both ways until one side goes; then close the other."""

    async def pump(source: WebSocket, target: WebSocket) -> None:
        while True:
            message = await source.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                await target.send_bytes(data)

    try:
        async with asyncio.TaskGroup() as tg:
            one = tg.create_task(pump(a, b))
            two = tg.create_task(pump(b, a))
            await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
            for task in (one, two):
                task.cancel()
    except* (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for ws in (a, b):
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close()
