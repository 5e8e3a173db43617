"""The WebSocket a client opens to run commands on nodes and see them live."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import msgspec
from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from shoal.controller.auth import Authenticator, accept_user
from shoal.controller.commands import CommandRelay
from shoal.controller.links import Link, write_frames
from shoal.protocol import ClientMessage, FrameDecoder, FrameEncoder

log = logging.getLogger("shoal.controller.clients")
_numbers = itertools.count(1)


class ClientGateway:
    def __init__(self, auth: Authenticator, relay: CommandRelay) -> None:
        self.auth = auth
        self.relay = relay
        self._decoder: FrameDecoder[ClientMessage] = FrameDecoder(ClientMessage)
        self._encoder = FrameEncoder()

    async def serve(self, ws: WebSocket) -> None:
        caller = await accept_user(ws, self.auth)
        if caller is None:
            return
        link = Link(f"client-{next(_numbers)}-{caller.login}")
        try:
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._reader(ws, link, caller))
                await write_frames(ws, link, self._encoder)
                reader.cancel()
        except* (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            link.close()
            self.relay.client_gone(link)
            if ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close()

    async def _reader(self, ws: WebSocket, link: Link, caller) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                data = await ws.receive_bytes()
                for message in self._decoder.decode(data):
                    self.relay.from_client(link, caller, message)
        except WebSocketDisconnect:
            pass
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError) as exc:
            log.warning("client %s sent a malformed frame, disconnecting it: %s", link.name, exc)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(code=1003, reason=f"malformed frame: {exc}"[:120])
        finally:
            link.close()
