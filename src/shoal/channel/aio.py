"""The asyncio face of a channel: ordered messages, flow-controlled, with one peer.

An :class:`AsyncChannel` runs two tasks of its own while it is open: a reader
(frames in: data into a buffer bounded by the window it granted, credit and
close from the peer) and a writer (the application's messages out, batched,
within the peer's credit, and credit back to the peer). Both end with
:meth:`AsyncChannel.aclose`; ``async with`` calls it.

``send`` queues and returns at once while the queue is short, so a loop of
sends costs no system call per message; it waits while the queue is full,
which it stays while the peer grants no credit: a slow reader slows the writer.
A message sent while nothing is queued and the connection can take it at once
is written from ``send`` itself (the writer task would only do the same a loop
turn later); the sends that follow in the same loop turn queue for the writer,
which batches them as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

import msgspec

from shoal.channel.errors import (
    ChannelClosed,
    ChannelError,
    ChannelLost,
    ChannelProtocolError,
    ChannelTimeout,
)
from shoal.channel.flow import Flow, Window
from shoal.channel.transport import Body, Sendable, StreamTransport, Transport
from shoal.protocol import channel_messages as cm

log = logging.getLogger("shoal.channel")

QUEUE_MESSAGES = 8192  # queued by the application before send() waits
QUEUE_BYTES = 2 * 1024 * 1024
BATCH_MESSAGES = 8192  # most messages in one Data frame
BATCH_BYTES = 1024 * 1024  # about the most bytes in one Data frame
CLOSE_TIMEOUT = 10.0  # how long a close waits for queued data to leave and the peer's answer
# How long dropping a channel (aclose) lets a close under way send its Close: the
# frame only has to be written, so a peer that reads nothing is not waited for.
CLOSE_SEND_TIMEOUT = 2.0


class AsyncChannel:
    """One end of an open channel (asyncio).

    ``peer`` names the other end (a node name for the opener, the opener's
    identity for the target); ``path`` is ``"direct"`` or ``"relay"``, for tests
    and benchmarks: users of a channel should not care.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        channel_id: str,
        peer: str,
        path: str,
        window: Window,
        send_credit: tuple[int, int],
        endpoint: str = "",
        pending: Iterable[bytes] = (),
    ) -> None:
        self.id = channel_id
        self.peer = peer
        self.path = path
        self.endpoint = endpoint
        self._transport = transport
        # Written to from send() when the writer has nothing queued (see _write_direct).
        self._direct = transport if isinstance(transport, StreamTransport) else None
        self._corked = False  # a frame went out from send() this loop turn
        self._flow = Flow(window, *send_credit)
        self._incoming: deque[bytes] = deque()
        self._outgoing: list[bytes] = []
        self._out_bytes = 0
        self._grant: tuple[int, int] | None = None  # credit to give back, not yet sent
        self._readable = asyncio.Event()
        self._arrived: Callable[[], None] | None = None  # see _listen
        self._writable = asyncio.Event()  # the writer has something to do
        self._space = asyncio.Event()  # the send queue has room
        self._space.set()
        self._closing: str | None = None  # our Close reason, once close() began
        self._close_sent = asyncio.Event()
        self._writer_done = asyncio.Event()
        self._peer_close: str | None = None  # the peer's Close reason, once it came
        self._peer_done = asyncio.Event()  # the peer's Close, or the end of its stream
        self._failure: ChannelError | None = None
        self._failure_told = False  # raised to the application already
        self._pending: list[Body] = list(pending)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def failure(self) -> ChannelError | None:
        """Why the channel broke (the peer lost, a bad frame), if it did."""
        return self._failure

    @property
    def _ending(self) -> bool:
        return (
            self._closing is not None
            or self._peer_close is not None
            or self._failure is not None
            or self._closed
        )

    def start(self) -> AsyncChannel:
        """Start moving frames (called once the channel is accepted)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._read(), name=f"channel-{self.id}-read"),
                asyncio.create_task(self._write(), name=f"channel-{self.id}-write"),
            ]
        return self

    # --- the application's side --------------------------------------------

    async def send(self, data: bytes) -> None:
        """Queue one message; waits while the queue is full (the peer reads slowly).
        Raises ChannelError once the channel is ending or broken. A large message
        is sent from ``data`` itself, not a copy: a buffer passed as ``data``
        must not change afterwards."""
        # _ending spelled out: this runs once per message.
        if (
            self._closing is not None
            or self._peer_close is not None
            or self._failure is not None
            or self._closed
        ):
            raise self._end_error()
        outgoing = self._outgoing
        outgoing.append(data)
        self._out_bytes += len(data)
        if len(outgoing) == 1:
            # The writer waits only with an empty queue, or for credit (which wakes it).
            if not self._write_direct():
                self._writable.set()
        elif len(outgoing) >= QUEUE_MESSAGES or self._out_bytes >= QUEUE_BYTES:
            await self._wait_space()

    async def send_many(self, payloads: Iterable[bytes]) -> None:
        """Queue messages, in order and all at once; waits while the queue is full."""
        if self._enqueue(payloads):
            await self._wait_space()

    def _enqueue(self, payloads: Iterable[bytes]) -> bool:
        """``send_many`` without the wait (for the blocking face's loop side): True
        if the queue is now full, and the caller must wait for space."""
        if self._ending:
            raise self._end_error()
        payloads = list(payloads)
        idle = not self._outgoing
        self._outgoing.extend(payloads)
        self._out_bytes += sum(map(len, payloads))
        if not (idle and self._write_direct()):
            self._writable.set()
        return len(self._outgoing) >= QUEUE_MESSAGES or self._out_bytes >= QUEUE_BYTES

    async def recv(self) -> bytes:
        """The next message. At the end raises ChannelClosed (a clean end) or another
        ChannelError naming the peer and why; what arrived before is read first."""
        while not self._incoming:
            await self._wait_readable()
        data = self._incoming.popleft()
        self._consumed(1, len(data))
        return data

    async def recv_many(self) -> list[bytes]:
        """Every message that has arrived (at least one); the end as for ``recv``."""
        while not self._incoming:
            await self._wait_readable()
        return self._take_arrived()

    def _take_arrived(self) -> list[bytes]:
        """``recv_many`` without the wait (for the blocking face's loop side): what
        has arrived, perhaps nothing; raises as ``recv_many`` once nothing is left
        and nothing more will come."""
        if not self._incoming:
            if self._peer_close is not None or self._failure or self._closed:
                raise self._end_error()
            return []
        taken = list(self._incoming)
        self._incoming.clear()
        self._consumed(len(taken), sum(map(len, taken)))
        return taken

    def _listen(self, arrived: Callable[[], None]) -> None:
        """Call ``arrived`` on the loop whenever messages arrive or the channel ends
        (for the blocking face: it takes them from there, a loop turn sooner
        than a task waiting in ``recv_many``); once, at once, for what came before."""
        self._arrived = arrived
        arrived()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        """Messages until the peer's clean close; an error end raises."""
        while True:
            try:
                batch = await self.recv_many()
            except ChannelClosed:
                return
            for data in batch:
                yield data

    async def close(self, reason: str = "") -> None:
        """End the channel. ``reason`` "": a clean end, everything queued is delivered
        first; else an error end that the peer sees with the reason (queued
        messages without credit are dropped). Waits for the peer's answer (up
        to CLOSE_TIMEOUT), then closes the connection.

        Raises the channel's failure if the peer was lost before a clean close
        completed (what was sent may not have arrived) and no call raised it
        yet; ChannelTimeout if the peer did not take it in time."""
        if self._closed:
            return
        timed_out = False
        if self._closing is None and self._peer_close is None and not self._failure:
            self._closing = reason
            self._writable.set()
        if self._tasks:
            # Ours or the peer's Close came first: either way the writer sends our
            # Close (or answers the peer's) before the connection goes.
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._writer_done.wait()
                    await self._peer_done.wait()
            except TimeoutError:
                timed_out = True
        failure = self._failure
        await self.aclose()
        if reason:
            return
        if failure is not None and not self._failure_told:
            raise failure
        if timed_out and not self._close_sent.is_set():
            raise ChannelTimeout(
                f"{self.peer} did not take what was sent within {CLOSE_TIMEOUT:g} s",
                peer=self.peer,
            )

    async def aclose(self) -> None:
        """Stop the channel's tasks and close its connection (without ``close``
        first, the peer sees the connection lost)."""
        if self._closed:
            return
        if self._closing is not None and self._tasks and not self._writer_done.is_set():
            # A close() is under way (another task's: a revoked token, a handler
            # that ended because of it): its Close must still leave, or the peer
            # sees the connection lost instead of the reason.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_SEND_TIMEOUT):
                    await self._writer_done.wait()
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._transport.close()
        self._wake_all()

    async def __aenter__(self) -> AsyncChannel:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            await self.close()
        else:
            await self.close(f"the other end failed ({kind.__name__})")

    # --- internals ---------------------------------------------------------

    def _write_direct(self) -> bool:
        """Write the queue (which the writer has not seen: it was empty) straight to
        the connection if the credit allows all of it and the connection takes it
        without waiting; once per loop turn, so that a loop of sends still goes out
        in batches. True if it did; else the writer must be woken."""
        direct = self._direct
        if direct is None or self._corked or not self._tasks:
            return False
        outgoing = self._outgoing
        count, size = len(outgoing), self._out_bytes
        if not 0 < count <= BATCH_MESSAGES or size > BATCH_BYTES or not direct.write_ready():
            return False
        if not self._flow.spend(count, size):
            return False
        frames: list[Sendable] = [cm.encode_data(outgoing, size)]
        if self._grant is not None:
            frames.append(cm.encode(cm.Credit(*self._grant)))
            self._grant = None
        self._outgoing = []
        self._out_bytes = 0
        direct.write(frames)
        self._corked = True
        asyncio.get_running_loop().call_soon(self._uncork)
        return True

    def _uncork(self) -> None:
        self._corked = False

    async def _wait_space(self) -> None:
        while len(self._outgoing) >= QUEUE_MESSAGES or self._out_bytes >= QUEUE_BYTES:
            if self._failure or self._peer_close is not None or self._closed:
                raise self._end_error()
            self._space.clear()
            await self._space.wait()

    async def _wait_readable(self) -> None:
        if self._peer_close is not None or self._failure or self._closed:
            raise self._end_error()
        self._readable.clear()
        await self._readable.wait()

    def _consumed(self, count: int, nbytes: int) -> None:
        grant = self._flow.consumed(count, nbytes)
        if grant is not None:
            if self._grant is not None:
                grant = (grant[0] + self._grant[0], grant[1] + self._grant[1])
            self._grant = grant
            self._writable.set()

    def _end_error(self) -> ChannelError:
        """Why nothing more can be sent or received."""
        if self._peer_close:
            return ChannelLost(
                f"peer {self.peer} closed the channel: {self._peer_close}", peer=self.peer
            )
        if self._peer_close == "":
            return ChannelClosed(f"peer {self.peer} closed the channel", peer=self.peer)
        if self._failure is not None:
            self._failure_told = True
            return self._failure
        return ChannelClosed(f"the channel to {self.peer} is closed", peer=self.peer)

    def _wake_all(self) -> None:
        for event in (self._readable, self._space, self._writable, self._peer_done):
            event.set()
        if self._arrived is not None:
            self._arrived()

    def _fail(self, error: ChannelError) -> None:
        if self._failure is None and self._peer_close is None:
            self._failure = error
        self._wake_all()

    async def _read(self) -> None:
        # On a stream the frames are dispatched from the transport's callback as
        # they arrive (see StreamTransport.deliver_to): this task then only waits
        # for the end of the stream.
        try:
            if not self._received(self._pending):
                return
            self._pending = []
            if self._direct is not None:
                self._direct.deliver_to(self._received)
            while (bodies := await self._transport.read()) is not None:
                if not self._received(bodies):
                    return
            if self._peer_close is None:
                self._fail(ChannelLost(f"connection to {self.peer} lost", peer=self.peer))
        except OSError as exc:  # ConnectionError included
            if self._peer_close is None:
                self._fail(ChannelLost(f"connection to {self.peer} lost: {exc}", peer=self.peer))
        finally:
            self._wake_all()

    def _received(self, bodies: list[Body]) -> bool:
        """Dispatch frames from the peer; False once one was bad (the channel failed,
        and reads no more)."""
        try:
            for body in bodies:
                self._dispatch(body)
        except ChannelProtocolError as exc:
            self._fail(ChannelProtocolError(f"{self.peer}: {exc}", peer=self.peer))
            return False
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._fail(ChannelProtocolError(f"{self.peer} sent a bad frame: {exc}", peer=self.peer))
            return False
        if self._arrived is not None and self._incoming:
            self._arrived()
        return True

    def _dispatch(self, body: Body) -> None:
        message = cm.decode(body)
        if isinstance(message, cm.Data):
            if self._peer_close is not None or self._closing is not None:
                return  # after a Close, data is not delivered
            payloads = message.payloads
            sizes = list(map(len, payloads))
            self._flow.received(len(payloads), sum(sizes), max(sizes, default=0))
            self._incoming.extend(payloads)
            self._readable.set()
        elif isinstance(message, cm.Credit):
            self._flow.granted(message.messages, message.bytes)
            self._writable.set()
        elif isinstance(message, cm.Close):
            if message.lost:
                # A relay lost the peer: as if its connection had dropped here.
                self._fail(ChannelLost(f"connection to {self.peer} lost", peer=self.peer))
            elif self._peer_close is None and self._failure is None:
                self._peer_close = message.reason
            self._wake_all()
        else:
            raise ChannelProtocolError(f"unexpected {type(message).__name__} in an open channel")

    async def _write(self) -> None:
        """Send queued messages within the credit, credit due, and the Close."""
        try:
            while True:
                await self._writable.wait()
                self._writable.clear()
                if self._failure is not None:
                    return
                if self._peer_close is not None:
                    # The peer ended the channel: answer with our Close, drop the rest.
                    await self._send_close("" if self._closing is None else self._closing)
                    return
                frames: list[Sendable] = []
                if self._grant is not None:
                    frames.append(cm.encode(cm.Credit(*self._grant)))
                    self._grant = None
                if self._outgoing and self._flow.can_send():
                    batch, size = self._flow.take(self._outgoing, BATCH_MESSAGES, BATCH_BYTES)
                    self._out_bytes -= size
                    frames.append(cm.encode_data(batch, size))
                    self._space.set()
                if frames:
                    await self._transport.send(frames)
                    self._writable.set()  # there may be more to send
                elif self._closing is not None and (self._closing or not self._outgoing):
                    await self._send_close(self._closing)
                    return
                # Else nothing can go now: wait for a send, credit, a close.
        except OSError as exc:
            self._fail(ChannelLost(f"connection to {self.peer} lost: {exc}", peer=self.peer))
        finally:
            self._writer_done.set()

    async def _send_close(self, reason: str) -> None:
        self._outgoing.clear()
        self._out_bytes = 0
        self._space.set()
        await self._transport.send([cm.encode(cm.Close(reason))])
        self._close_sent.set()


async def close_quietly(channel: AsyncChannel, reason: str = "") -> None:
    """Close ``channel`` (see :meth:`AsyncChannel.close`), ignoring how it failed:
    for closes made on someone else's behalf, where nobody waits for the outcome."""
    with contextlib.suppress(ChannelError):
        await channel.close(reason)


__all__ = ["AsyncChannel", "close_quietly"]
