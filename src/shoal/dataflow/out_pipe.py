"""The sending end of a dataflow pipe: what a job's ``emit`` fills and a writer
on the channel loop drains (see :mod:`shoal.dataflow.transport` for how pipes
travel)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import threading
import time
from typing import Any

from shoal.channel import AsyncChannel, ChannelError
from shoal.dataflow.pipes import BasePipe
from shoal.dataflow.transport import (
    END,
    LOCAL_NODE,
    LOCAL_RECEIVERS,
    MAX_BATCH_BYTES,
    MAX_BUFFER_BYTES,
    RECONNECT_EVERY,
    InProcessLink,
    PipeLink,
    PipeLinks,
    Route,
)

log = logging.getLogger("shoal.dataflow")


class OutPipe:
    """The sending end of one pipe: a bounded buffer the job fills, and a writer
    on the channel loop that sends it in batches."""

    def __init__(self, pipe: BasePipe, links: PipeLinks, capacity: int = 4096) -> None:
        self.pipe = pipe
        self.links = links
        self.capacity = capacity
        self._plain = pipe.transparent  # nothing to pack or encode: skip the calls
        self.dropped = 0
        self._batches = 0  # taken to send: finish() waits while this moves
        self._items: list[tuple[Any, ...]] = []
        self._bytes = 0  # of bytes and str values queued: large values bound the buffer too
        # A plain lock for the common path (a Condition's own ``with`` runs Python
        # code per value); its Condition only for waiting, and notified only
        # when a producer waits for room.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._producers_waiting = 0
        self._route: Route | None = None
        self._route_changed = False
        self._ending = False
        self._closed = False
        self._writer_waiting = False
        self._wake = asyncio.Event()
        self._last_attempt = 0.0
        self._offered: tuple[AsyncChannel, asyncio.Future[None]] | None = None
        self._done = threading.Event()
        links.outputs[pipe.id] = self
        links.spawn(self._run())

    # --- from the job's threads ------------------------------------------------

    def set_route(self, route: Route | None) -> None:
        with self._lock:
            if route == self._route:
                return
            self._route = route
            self._route_changed = True
            self._last_attempt = 0.0
            self._cond.notify_all()
        self._kick()

    def put(self, key: Any, value: Any, head: int = 0) -> None:
        """Queue one value (blocks while the buffer is full and the receiver is slow).

        A non-zero FISSION ``head`` travels beside the value: ``(key, data, head)``.
        """
        data = value if self._plain else self.pipe.to_wire(value)
        size = len(data) if isinstance(data, bytes | str) else 0
        with self._lock:
            if len(self._items) >= self.capacity or self._bytes >= MAX_BUFFER_BYTES:
                self._wait_for_room()
            self._items.append((key, data, head) if head else (key, data))
            self._bytes += size
            kick = self._writer_waiting
            self._writer_waiting = False
        if kick:
            self._kick()

    def _wait_for_room(self) -> None:
        """With the lock held: wait until the writer took some of a full buffer."""
        self._producers_waiting += 1
        try:
            while (
                len(self._items) >= self.capacity or self._bytes >= MAX_BUFFER_BYTES
            ) and not self._closed:
                self._cond.wait()
        finally:
            self._producers_waiting -= 1

    def finish(self, timeout: float = 10.0) -> None:
        """Send what is queued, then tell the receiver this pipe ended.

        Waits as long as values keep leaving, however slow the receiver is; one
        that takes nothing for ``timeout`` seconds is given up on.
        """
        with self._lock:
            self._ending = True
        self._kick()
        seen = -1
        while not self._done.is_set() and self._batches != seen:
            seen = self._batches
            self._done.wait(timeout)
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cond.notify_all()
        self._kick()

    def _kick(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: so is the writer
            self.links.loop.call_soon_threadsafe(self._wake.set)

    # --- on the loop ---------------------------------------------------------------

    async def offer(self, channel: AsyncChannel) -> None:
        """A LOCAL receiver opened ``channel`` for this pipe: the writer takes it.
        Returns once the writer is done with it."""
        released = asyncio.get_running_loop().create_future()
        if self._offered is not None:
            old, old_released = self._offered
            await old.aclose()
            if not old_released.done():
                old_released.set_result(None)
        self._offered = (channel, released)
        self._wake.set()
        await released

    async def _run(self) -> None:
        link: PipeLink | None = None
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    changed, self._route_changed = self._route_changed, False
                    if self._items or self._ending:
                        batch = self._take_batch()
                        self._batches += 1
                        # A queue of large values leaves in several batches: the
                        # end goes after the last of them, not after the first.
                        ending = self._ending and not self._items
                        if self._producers_waiting:
                            self._cond.notify_all()  # room in the buffer again
                    else:
                        batch, ending = [], False
                        if not changed:
                            self._writer_waiting = True
                            self._wake.clear()
                if changed and link is not None:
                    await self._drop(link)
                    link = None
                if not batch and not ending:
                    if not changed:
                        await self._wake.wait()
                    continue
                if link is None:
                    link = await self._connect()
                if link is None:
                    self.dropped += len(batch)
                    if ending:
                        return
                    continue
                try:
                    if batch:
                        await link.send(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                    if ending:
                        await link.send(END)
                        await link.close()
                        return
                except ChannelError as exc:
                    log.info(
                        "pipe %s: receiver lost (%s); %d values dropped",
                        self.pipe.id,
                        exc,
                        len(batch),
                    )
                    self.dropped += len(batch)
                    await self._drop(link)
                    link = None
        finally:
            if link is not None:
                await self._drop(link)
            self._done.set()

    async def _drop(self, link: PipeLink) -> None:
        await link.aclose()
        if self._offered is not None and self._offered[0] is link:
            _, released = self._offered
            self._offered = None
            if not released.done():
                released.set_result(None)

    async def _wait_a_little(self) -> None:
        """Wait for a new route, an offered channel or a close, at most RECONNECT_EVERY."""
        with self._lock:
            if self._route_changed or self._closed:
                return
            self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECONNECT_EVERY):
                await self._wake.wait()

    async def _connect(self) -> PipeLink | None:
        route = self._route
        if route is None:
            await self._wait_a_little()
            return None
        if route.accept:
            # The LOCAL receiver comes (it never fails over): hold the values
            # for it rather than drop them, until the route changes or a close.
            while self._offered is None:
                with self._lock:
                    if self._route_changed or self._closed:
                        return None
                await self._wait_a_little()
            return self._offered[0]
        if route.node == LOCAL_NODE:
            receiver = LOCAL_RECEIVERS.get(route.endpoint)
            return InProcessLink(receiver, self.pipe.id) if receiver is not None else None
        now = time.monotonic()
        if now - self._last_attempt < RECONNECT_EVERY:
            await self._wait_a_little()
            return None
        self._last_attempt = now
        return await self.links.open(route, self.pipe.id)

    def _take_batch(self) -> list[tuple[Any, ...]]:
        """What goes in the next message: everything queued, or about MAX_BATCH_BYTES of it."""
        if self._bytes <= MAX_BATCH_BYTES:
            batch, self._items, self._bytes = self._items, [], 0
            return batch
        taken, size = 0, 0
        for item in self._items:
            data = item[1]
            taken += 1
            size += len(data) if isinstance(data, bytes | str) else 0
            if size >= MAX_BATCH_BYTES:
                break
        batch, self._items = self._items[:taken], self._items[taken:]
        self._bytes -= size
        return batch


__all__ = ["OutPipe"]
