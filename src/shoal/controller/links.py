"""A live WebSocket peer (agent or client): a queue of messages sent in batches."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import WebSocket

from shoal.protocol import FrameEncoder


class Link:
    def __init__(self, name: str) -> None:
        self.name = name
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = asyncio.Event()

    def send(self, message: Any) -> None:
        if not self.closed.is_set():
            self.outbox.put_nowait(message)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.outbox.put_nowait(None)


async def write_frames(ws: WebSocket, link: Link, encoder: FrameEncoder) -> None:
    """Send what is queued on ``link``, many messages per frame, until it closes."""
    while True:
        first = await link.outbox.get()
        if first is None:
            return
        batch = [first]
        while not link.outbox.empty():
            nxt = link.outbox.get_nowait()
            if nxt is None:
                await ws.send_bytes(encoder.encode(batch))
                return
            batch.append(nxt)
        await ws.send_bytes(encoder.encode(batch))
