"""A live WebSocket peer (agent or client): a queue of messages sent in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket

from shoal.protocol import FrameEncoder

log = logging.getLogger("shoal.controller")
# For frames written straight to the connection: one event loop, one at a time.
_ENCODER = FrameEncoder()


class Link:
    """Messages to one peer, sent many to a frame.

    With ``write`` (the connection's ``FrameTap.write``) what is sent in one
    turn of the event loop goes out as one frame at the end of that turn,
    written straight to the connection: no task wakes for it. Without it, or
    once ``write`` refuses (the connection is closing), messages queue for
    :func:`write_frames`, which sends them through the ASGI path.
    """

    def __init__(self, name: str, write: Callable[[bytes], bool] | None = None) -> None:
        self.name = name
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._write = write
        self._pending: list[Any] = []
        self.closed = asyncio.Event()
        # Why the controller sent the peer away, and the WebSocket close code
        # that tells it how (refused for good, or try again later).
        self.reason: str | None = None
        self.close_code = 1000

    def send(self, message: Any) -> None:
        if self.closed.is_set():
            return
        if self._write is None:
            self.outbox.put_nowait(message)
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(message)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._write is not None and self.outbox.empty():
            if self._write(_encode(_ENCODER, batch, self.name)):
                return
            self._write = None  # closing: the ASGI path reports how it ended
        for message in batch:
            self.outbox.put_nowait(message)

    def close(self, reason: str | None = None, code: int = 1000) -> None:
        if not self.closed.is_set():
            self._flush()  # what was sent before the close goes out before it
            self.reason, self.close_code = reason, code
            self.closed.set()
            self.outbox.put_nowait(None)


async def write_frames(ws: WebSocket, link: Link, encoder: FrameEncoder) -> None:
    """Send what is queued on ``link``, many messages per frame, until it closes."""
    while True:
        first = await link.outbox.get()
        if first is None:
            return
        batch = [first]
        closing = False
        while not link.outbox.empty():
            nxt = link.outbox.get_nowait()
            if nxt is None:
                closing = True
                break
            batch.append(nxt)
        await ws.send_bytes(_encode(encoder, batch, link.name))
        if closing:
            return


def _encode(encoder: FrameEncoder, batch: list[Any], name: str) -> bytes:
    try:
        return encoder.encode(batch)
    except (TypeError, ValueError, UnicodeError):
        # One message that cannot be encoded must not take the whole link down
        # (and come back on every reconnect): send the others, log that one.
        good = []
        for message in batch:
            try:
                encoder.encode([message])
            except (TypeError, ValueError, UnicodeError) as exc:
                log.error(
                    "dropped a %s for %s that cannot be encoded: %s",
                    type(message).__name__,
                    name,
                    exc,
                )
            else:
                good.append(message)
        return encoder.encode(good)
