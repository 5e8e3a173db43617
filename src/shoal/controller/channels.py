"""Channels: byte streams relayed by the controller between peers that cannot meet.

Every agent, executor and client reaches the controller; they may not reach each
other (NAT, firewalls). A *listener* opens ``/api/channels/listen/{name}``; a
*connector* opens ``/api/channels/connect/{name}``; the controller tells the
listener (a text frame with a connection id), the listener opens
``/api/channels/accept/{id}``, and from then on the binary frames of the two are
relayed both ways until either side closes. Names are per user, and an
executor's token reaches only its own experiment's channels (see ChannelRelay).
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

from shoal.controller.auth import Authenticator, Principal, accept_user, bearer_of

log = logging.getLogger("shoal.controller.channels")

ACCEPT_TIMEOUT = 10.0  # seconds a connector waits for the listener to take it


Key = tuple[int, str | None, str]  # (user, the executor's experiment or None, channel name)


@dataclass(eq=False)
class _Listener:
    """A listener; ``admits`` is the experiment-name prefix whose executors may connect
    to a user's listener (None: the user's clients only)."""

    ws: WebSocket
    admits: str | None = None


@dataclass(eq=False)
class _Pending:
    """A connector waiting for its listener to accept, then for the relay to end."""

    listener: Key
    accepted: asyncio.Future[WebSocket] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _scope(caller: Principal) -> str | None:
    """The experiment an executor's channels are confined to; None for a user."""
    return caller.experiment_id if caller.kind == "executor" else None


class ChannelRelay:
    """Pairs connectors with listeners and relays their bytes.

    A user's clients share the user's channel names. An executor token reaches
    only its own experiment: its listeners are seen by that experiment's
    executors alone, and it connects to its experiment's listeners or to a
    user's listener that admits its experiment by name prefix
    (``?experiments=PREFIX``).
    """

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self._listeners: dict[Key, _Listener] = {}
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        # Since start, for /metrics.
        self.connections = 0
        self.relayed_messages = 0
        self.relayed_bytes = 0

    @property
    def listening(self) -> int:
        """How many channels have a listener now."""
        return len(self._listeners)

    async def _accept(self, ws: WebSocket) -> Principal | None:
        return await accept_user(ws, self.auth, kinds=("user", "executor"))

    async def listen(self, ws: WebSocket, name: str) -> None:
        admits = ws.query_params.get("experiments") or None
        caller = await self._accept(ws)
        if caller is None:
            return
        if admits is not None and caller.kind != "user":
            await ws.close(code=4403, reason="only a user's listener may admit other experiments")
            return
        key = (caller.user_id, _scope(caller), name)
        if key in self._listeners:
            await ws.close(code=4409, reason=f"channel {name!r} already has a listener")
            return
        listener = _Listener(ws, admits)
        self._listeners[key] = listener
        try:
            while True:  # nothing to read; this notices the listener leaving
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            if self._listeners.get(key) is listener:
                del self._listeners[key]

    def _listener_for(self, caller: Principal, name: str) -> tuple[Key, _Listener] | None:
        own = (caller.user_id, _scope(caller), name)
        found = self._listeners.get(own)
        if found is not None:
            return own, found
        if caller.kind != "executor":
            return None
        users = (caller.user_id, None, name)
        found = self._listeners.get(users)
        experiment = caller.experiment_name
        if found is None or found.admits is None or experiment is None:
            return None
        return (users, found) if experiment.startswith(found.admits) else None

    async def connect(self, ws: WebSocket, name: str) -> None:
        caller = await bearer_of(ws, self.auth)
        target = self._listener_for(caller, name) if caller is not None else None
        if caller is None or target is None:
            # Refused before the handshake completes: the connector's open fails at
            # once (403), instead of opening and then finding nobody there.
            await ws.close(code=4404, reason=f"nobody listens on channel {name!r}")
            return
        await ws.accept()
        self.auth.opened(ws, caller)
        key, listener = target
        conn_id = f"{next(self._ids)}-{secrets.token_hex(8)}"
        pending = _Pending(key)
        self._pending[conn_id] = pending
        try:
            await listener.ws.send_text(conn_id)
            other = await asyncio.wait_for(pending.accepted, ACCEPT_TIMEOUT)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(code=4408, reason=f"channel {name!r}: the listener did not answer")
            return
        finally:
            self._pending.pop(conn_id, None)
        self.connections += 1
        try:
            await _relay(ws, other, self)
        finally:
            pending.done.set()

    async def accept(self, ws: WebSocket, conn_id: str) -> None:
        caller = await self._accept(ws)
        if caller is None:
            return
        pending = self._pending.get(conn_id)
        # Only the listener's own side may take the connection; anyone else's
        # attempt leaves it waiting for them.
        if (
            pending is None
            or pending.accepted.done()
            or pending.listener[:2] != (caller.user_id, _scope(caller))
        ):
            await ws.close(code=4404, reason="no such connection")
            return
        pending.accepted.set_result(ws)
        # The connector's handler relays; this one keeps the socket open meanwhile.
        await pending.done.wait()


async def _relay(a: WebSocket, b: WebSocket, counts: ChannelRelay) -> None:
    """Forward binary frames both ways until one side goes; then close the other.

    Every frame forwarded is counted in ``counts`` (messages and bytes)."""

    async def pump(source: WebSocket, target: WebSocket) -> None:
        while True:
            message = await source.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                await target.send_bytes(data)
                counts.relayed_messages += 1
                counts.relayed_bytes += len(data)

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
