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
from shoal.dataflow.segments import Segment, values_in
from shoal.dataflow.transport import (
    END,
    LOCAL_NODE,
    LOCAL_RECEIVERS,
    MAX_BATCH_BYTES,
    MAX_BUFFER_BYTES,
    RECONNECT_EVERY,
    REFUSED,
    InProcessLink,
    PipeLink,
    PipeLinks,
    Refused,
    Route,
)

log = logging.getLogger("shoal.dataflow")

# How long a finished job's pipe waits for a receiver it cannot reach now (the
# controller or the receiver's node is away) before it gives its values up.
# Only while the run goes on: a run that is stopping ends the hold at once
# (:meth:`OutPipe.give_up`). A controller restart, supervised or by hand, with
# its agents back (they retry every 2 s at most) takes seconds to a few
# minutes; past that the controller is taken to be gone for good, and a
# finished job must not keep its executor on the node, and its run unfinished,
# for longer waiting on it.
UNREACHABLE_PATIENCE = 300.0
_SIZED = (bytes, str)  # values whose size bounds the buffer (a tuple: a union is built per call)


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
        # The last try to reach the receiver found the controller or its node
        # away (a restart, say): finish() waits longer for it to come back.
        self._unavailable = False
        # The run is stopping (give_up): nothing is held for a receiver any more.
        self._given_up = False
        self._done = threading.Event()  # the writer ended
        self._released = threading.Event()  # the writer ended, or the hold was given up
        # What is queued, as runs of consecutive keys (see transport.Segment): a
        # run travels as one list of values, not a key tuple per value.
        self._segments: list[Segment] = []
        self._tail: Segment | None = None  # the run the next consecutive value joins
        self._next_seq = -1
        self._count = 0  # values queued
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

        A non-zero FISSION ``head`` travels beside the value.
        """
        # This runs once per value of every pipe: each attribute touched counts.
        data = value if self._plain else self.pipe.to_wire(value)
        # acquire/release, not ``with``: its __exit__ call costs as much as the lock.
        self._lock.acquire()
        try:
            if self._count >= self.capacity or self._bytes >= MAX_BUFFER_BYTES:
                self._wait_for_room()
            tail = self._tail
            seq = key[1]
            if tail is not None and seq == self._next_seq and key[0] == tail[0]:
                heads = tail[3]
                if heads is not None:
                    tail[2].append(data)
                    heads.append(head)
                elif not head:
                    tail[2].append(data)
                else:
                    self._new_run(key, data, head)
            else:
                self._new_run(key, data, head)
            self._next_seq = seq + 1
            self._count += 1
            if isinstance(data, _SIZED):
                self._bytes += len(data)
            if self._writer_waiting:
                self._writer_waiting = False
                kick = True
            else:
                kick = False
        finally:
            self._lock.release()
        if kick:
            self._kick()

    def _new_run(self, key: Any, data: Any, head: int) -> None:
        """With the lock held: a new epoch, a gap, a repeated key or the first head."""
        self._tail = [key[0], key[1], [data], [head] if head else None]
        self._segments.append(self._tail)

    def _wait_for_room(self) -> None:
        """With the lock held: wait until the writer took some of a full buffer."""
        self._producers_waiting += 1
        try:
            while (
                self._count >= self.capacity or self._bytes >= MAX_BUFFER_BYTES
            ) and not self._closed:
                self._cond.wait()
        finally:
            self._producers_waiting -= 1

    def finish(self, timeout: float = 10.0) -> None:
        """Send what is queued, then tell the receiver this pipe ended.

        Waits as long as values keep leaving, however slow the receiver is; one
        that takes nothing for ``timeout`` seconds is given up on. A receiver
        that cannot be reached yet is waited for up to UNREACHABLE_PATIENCE (the
        coordinator places a lost one again; the controller may be restarting),
        unless :meth:`give_up` says the run is stopping.
        """
        with self._lock:
            self._ending = True
        self._kick()
        seen = -1
        unreachable_until = time.monotonic() + UNREACHABLE_PATIENCE
        while not self._done.is_set():
            holding = (
                self._unavailable and not self._given_up and time.monotonic() < unreachable_until
            )
            if self._batches == seen and not holding:
                break
            seen = self._batches
            # give_up() wakes a hold at once; after it, values still leaving
            # are waited for as long as they keep leaving.
            (self._done if self._given_up else self._released).wait(timeout)
        self.close()

    def give_up(self) -> None:
        """The run is stopping (its coordinator said stop, or is gone): hold nothing
        for a receiver that cannot be reached, drop it as FISSION does, and let
        :meth:`finish` return now. A pipe whose receiver is reachable goes on
        until it is closed."""
        with self._lock:
            self._given_up = True
        self._released.set()
        self._kick()

    def close(self) -> None:
        """Stop the writer; what is still queued never leaves (counted as dropped)."""
        with self._lock:
            self._closed = True
            unsent = self._count
            if unsent:
                self._segments, self._tail = [], None
                self._count = self._bytes = 0
            self._cond.notify_all()
        if unsent:
            log.info("pipe %s: closed with %d values unsent; dropped", self.pipe.id, unsent)
            self.dropped += unsent
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
                    pending = bool(self._count or self._ending)
                    if not pending and not changed:
                        self._writer_waiting = True
                        self._wake.clear()
                if changed and link is not None:
                    await self._drop(link)
                    link = None
                if not pending:
                    if not changed:
                        await self._wake.wait()
                    continue
                if link is None:
                    # Reach the receiver before taking anything: until it can be
                    # reached the values stay queued (a full buffer holds the job
                    # back), so none is lost to a receiver that is only slow to
                    # come (its host starting, a grant while the controller restarts).
                    reached = await self._connect()
                    if reached is None:
                        continue
                    if reached is REFUSED:
                        # The receiver's host refused: the job is not there (it
                        # ended, or moved); what is queued for it goes nowhere.
                        with self._lock:
                            batch = self._take_batch()
                            self._batches += 1
                            ending = self._ending and not self._count
                            if self._producers_waiting:
                                self._cond.notify_all()
                        self.dropped += values_in(batch)
                        if ending:
                            return
                        continue
                    link = reached
                with self._lock:
                    batch = self._take_batch()
                    self._batches += 1
                    # A queue of large values leaves in several batches: the
                    # end goes after the last of them, not after the first.
                    ending = self._ending and not self._count
                    if self._producers_waiting:
                        self._cond.notify_all()  # room in the buffer again
                try:
                    if batch:
                        await link.send(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
                    if ending:
                        await link.send(END)
                        await link.close()
                        return
                except ChannelError as exc:
                    # Sent, but not known to have arrived: FISSION drops what was in
                    # flight to a receiver that was lost.
                    log.info(
                        "pipe %s: receiver lost (%s); %d values dropped",
                        self.pipe.id,
                        exc,
                        values_in(batch),
                    )
                    self.dropped += values_in(batch)
                    await self._drop(link)
                    link = None
        finally:
            if link is not None:
                await self._drop(link)
            self._done.set()
            self._released.set()

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
            if self._route_changed or self._closed or self._given_up:
                return
            self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECONNECT_EVERY):
                await self._wake.wait()

    async def _connect(self) -> PipeLink | Refused | None:
        """A link to the receiver; None: not now, keep the values and try again;
        REFUSED: the receiver is not there, drop them."""
        reached = await self._reach()
        if reached is None and self._given_up:
            # The run is stopping: the receiver will not come, nor a controller
            # to grant a channel to it (simulate stops its own).
            return REFUSED
        return reached

    async def _reach(self) -> PipeLink | Refused | None:
        route = self._route
        if route is None:
            # No receiver (it ended, or was lost and is not placed again yet):
            # what is queued goes nowhere, as in FISSION.
            await self._wait_a_little()
            return REFUSED
        if route.accept:
            # The LOCAL receiver comes (it never fails over): hold the values
            # for it rather than drop them, until the route changes or a close.
            while self._offered is None:
                with self._lock:
                    if self._route_changed or self._closed or self._given_up:
                        return None
                await self._wait_a_little()
            return self._offered[0]
        if route.node == LOCAL_NODE:
            receiver = LOCAL_RECEIVERS.get(route.endpoint)
            return InProcessLink(receiver, self.pipe.id) if receiver is not None else REFUSED
        if self._given_up:
            return None  # no grant asked of a controller that may be gone with the run
        now = time.monotonic()
        if now - self._last_attempt < RECONNECT_EVERY:
            await self._wait_a_little()
            return None
        self._last_attempt = now
        reached = await self.links.open(route, self.pipe.id)
        self._unavailable = reached is None
        return reached

    def _take_batch(self) -> list[Segment]:
        """What goes in the next message: everything queued, or about MAX_BATCH_BYTES of it."""
        if self._bytes <= MAX_BATCH_BYTES:
            batch, self._segments, self._tail = self._segments, [], None
            self._count = self._bytes = 0
            return batch
        batch: list[Segment] = []
        size = 0
        while self._segments and size < MAX_BATCH_BYTES:
            segment = self._segments[0]
            epoch, first, values, heads = segment
            taken = 0
            for data in values:
                taken += 1
                size += len(data) if isinstance(data, _SIZED) else 0
                if size >= MAX_BATCH_BYTES:
                    break
            if taken == len(values):
                batch.append(self._segments.pop(0))
                if segment is self._tail:
                    self._tail = None
            else:
                # The rest of the run stays (and may still grow, if it is the tail).
                batch.append([epoch, first, values[:taken], heads[:taken] if heads else None])
                segment[1], segment[2] = first + taken, values[taken:]
                if heads is not None:
                    segment[3] = heads[taken:]
            self._count -= taken
        self._bytes -= size
        return batch


__all__ = ["OutPipe"]
