"""The synchronous face of a channel, over the same model as the asyncio one.

Every :class:`Channel` of a process is an :class:`AsyncChannel` living on one
private event loop, in a daemon thread started on first use. Crossing to that
thread costs tens of microseconds, so the sync face never pays it per message:
``send`` gathers messages here and the loop takes them in batches: the first
message after a pause wakes it (one callback, which hands the batch to the
channel, and the channel writes it out at once if its writer is idle), so a
lone message does not wait for company, and it goes on taking, a batch a loop
turn, for as long as the sender keeps sending. On the other side, once
``recv`` was first called, the channel's reader moves what arrives into an
inbox here as it arrives and wakes a waiting ``recv`` directly: a message costs
one crossing, not a round trip to the loop per ``recv``, and a ``recv`` that
finds a message waiting does not touch the loop at all. The inbox is bounded as
the send side is (it stops taking while full, so the channel's credit holds
the peer back). A full send queue on the loop side blocks ``send``: a slow
reader slows a blocking writer too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any, TypeVar

from shoal.channel.aio import AsyncChannel
from shoal.channel.connect import connect as connect_async
from shoal.channel.connect import open_channel
from shoal.channel.errors import ChannelClosed, ChannelError
from shoal.channel.flow import DEFAULT_WINDOW, Window
from shoal.channel.handshake import OPEN_TIMEOUT
from shoal.protocol.channel_messages import ChannelGrant

T = TypeVar("T")
# Gathered here, not yet taken by the loop, before a send waits for the loop.
BLOCK_MESSAGES = 8192
BLOCK_BYTES = 4 * 1024 * 1024
# Blocking waits wake this often (seconds): a signal that lands just before a
# lock wait begins does not interrupt it, so a Ctrl-C is seen at the next turn.
WAIT_TURN = 0.5


class _LoopThread:
    """The process's private event loop for sync channels."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="shoal-channels")
        self.thread.daemon = True  # a sync channel left open must not keep the process alive
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not future.done():
            # In bounded turns (see WAIT_TURN), until the deadline.
            turn = WAIT_TURN if deadline is None else min(WAIT_TURN, deadline - time.monotonic())
            if turn <= 0:
                raise TimeoutError(f"the channel loop did not answer in {timeout:g} s")
            wait_futures([future], turn)
        return future.result()


def channel_loop() -> asyncio.AbstractEventLoop:
    """The process's private event loop of sync channels (started on first use), for
    code that runs asyncio channel work beside blocking code (e.g. dataflow pipes)."""
    return _LoopThread.get().loop


class Channel:
    """One end of an open channel, for blocking code. Thread-safe for one sender
    and one receiver at a time.

    ``peer`` and ``path`` are the underlying AsyncChannel's (``path`` only for
    tests and benchmarks).
    """

    def __init__(self, channel: AsyncChannel, runner: _LoopThread | None = None) -> None:
        self._async = channel
        self._runner = runner or _LoopThread.get()
        self._lock = threading.Lock()
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._pumping = False  # the loop takes batches as they come (see _pump_soon)
        self._pumps: set[asyncio.Task[None]] = set()
        self._recv_lock = threading.Lock()  # one receiver at a time
        self._inbox: deque[bytes] = deque()  # moved here by _deliver; guarded by _arrived
        self._inbox_bytes = 0
        self._arrived = threading.Condition(threading.Lock())
        self._inbox_end: ChannelError | None = None  # why _deliver stopped, once it did
        self._end_told = False  # the end was raised to the application
        self._fetching = False  # the channel calls _deliver as messages arrive
        self._inbox_full = False  # _deliver left messages in the channel (the receiver
        # calls it again once it made room)
        self._idle = False  # the receiver waits in recv, done with all it took before
        self._on_loop: Callable[[bytes], bool] | None = None  # see take_on_loop

    @classmethod
    def connect(
        cls,
        controller: str,
        token: str,
        node: str,
        endpoint: str,
        *,
        window: Window = DEFAULT_WINDOW,
        timeout: float = OPEN_TIMEOUT,
    ) -> Channel:
        """A channel to ``endpoint`` on ``node`` (see :func:`shoal.channel.connect`)."""
        runner = _LoopThread.get()
        opened = runner.run(
            connect_async(controller, token, node, endpoint, window=window, timeout=timeout)
        )
        return cls(opened, runner)

    @classmethod
    def open(
        cls,
        grant: ChannelGrant,
        controller: str,
        token: str,
        *,
        window: Window = DEFAULT_WINDOW,
        timeout: float = OPEN_TIMEOUT,
    ) -> Channel:
        """Open the channel a grant describes (see :func:`shoal.channel.open_channel`)."""
        runner = _LoopThread.get()
        opened = runner.run(
            open_channel(grant, controller=controller, token=token, window=window, timeout=timeout)
        )
        return cls(opened, runner)

    @property
    def peer(self) -> str:
        return self._async.peer

    @property
    def path(self) -> str:
        return self._async.path

    @property
    def id(self) -> str:
        return self._async.id

    # --- sending -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one message; blocks while the peer reads slowly. Raises
        ChannelError once the channel is ending or broken."""
        with self._lock:
            batch = self._batch
            batch.append(data)
            self._batch_bytes += len(data)
            if len(batch) >= BLOCK_MESSAGES or self._batch_bytes >= BLOCK_BYTES:
                wake = block = True  # the loop is behind: wait for it
            else:
                block = False
                wake = not self._pumping
                self._pumping = True
        if block:
            self.flush()
        elif wake:
            self._runner.loop.call_soon_threadsafe(self._pump_soon)

    def send_many(self, payloads: Iterable[bytes]) -> None:
        """Queue messages in order; blocks while the peer reads slowly."""
        with self._lock:
            for data in payloads:
                self._batch.append(data)
                self._batch_bytes += len(data)
        self.flush()

    def flush(self) -> None:
        """Hand what was gathered to the loop; blocks while its queue is full."""
        self._runner.run(self._hand_over())

    def _take(self) -> list[bytes]:
        with self._lock:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            if not batch:
                self._pumping = False  # the next send wakes the loop again
            return batch

    async def _hand_over(self) -> None:
        # Taken on the loop thread: batches reach the channel in the order taken
        # (send_many queues a batch before it first waits).
        batch = self._take()
        if batch:
            await self._async.send_many(batch)

    def _pump_soon(self) -> None:
        # On the loop: takes what the sender gathered, once a loop turn for as long
        # as it keeps sending, so a steady sender costs one wake-up of the loop, not
        # one per batch, and a lone message leaves in this callback (the channel
        # writes it out). Only a full channel queue needs a task, to wait for room.
        # A failure shows on the sender's next flush.
        batch = self._take()
        if not batch:
            return
        try:
            full = self._async._enqueue(batch)
        except OSError:
            return
        if full:
            task = self._runner.loop.create_task(self._pump())
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)
        else:
            self._runner.loop.call_soon(self._pump_soon)

    async def _pump(self) -> None:
        # Waits for room in the channel's queue, then takes batches as _pump_soon does.
        with contextlib.suppress(OSError):
            await self._async._wait_space()
            while batch := self._take():
                await self._async.send_many(batch)
                await asyncio.sleep(0)  # let the sender add more

    # --- receiving -----------------------------------------------------------

    def recv(self, timeout: float | None = None) -> bytes:
        """The next message; at the end raises ChannelClosed or another ChannelError.
        ``timeout``: raises TimeoutError if nothing came in that many seconds."""
        with self._recv_lock, self._arrived:
            self._wait_inbox(timeout)
            data = self._inbox.popleft()
            self._inbox_bytes -= len(data)
            self._made_room()
            return data

    def recv_many(self, timeout: float | None = None) -> list[bytes]:
        """Every message that has arrived (at least one)."""
        with self._recv_lock, self._arrived:
            self._wait_inbox(timeout)
            taken = list(self._inbox)
            self._inbox.clear()
            self._inbox_bytes = 0
            self._made_room()
            return taken

    def take_on_loop(self, take: Callable[[bytes], bool]) -> None:
        """Offer arriving messages to ``take`` on the channel loop's thread first, while
        the receiver waits in ``recv`` with nothing left to read (so it is done with
        every message before): ``take`` returns True if it took the message (``recv``
        never sees it), False to leave it, and the rest of what arrived with it, to
        ``recv``. For a receiver whose thread would only pass a message on (one
        thread hop less). ``take`` must not block: it runs on the loop that moves
        every channel of the process. Call before the first ``recv``."""
        self._on_loop = take

    def _wait_inbox(self, timeout: float | None) -> None:
        # Called holding _arrived: returns with the inbox not empty, or raises.
        if not self._fetching:
            self._fetching = True
            self._runner.loop.call_soon_threadsafe(self._async._listen, self._deliver)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._idle = True
        try:
            while not self._inbox:
                if self._inbox_end is not None:
                    self._end_told = True
                    raise self._inbox_end
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"nothing arrived from {self.peer} in {timeout:g} s")
                self._arrived.wait(WAIT_TURN if remaining is None else min(remaining, WAIT_TURN))
        finally:
            self._idle = False

    def _made_room(self) -> None:
        # Called holding _arrived.
        if self._inbox_full:
            self._inbox_full = False
            self._runner.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        # On the loop, from the channel's reader as messages arrive (and at its end).
        # Taking them gives the channel's credit back; the inbox bound keeps what is
        # taken but not yet received here bounded too.
        with self._arrived:
            # Until nothing is left: the channel's end may have come with its last data.
            while self._inbox_end is None:
                if len(self._inbox) >= BLOCK_MESSAGES or self._inbox_bytes >= BLOCK_BYTES:
                    self._inbox_full = True  # the receiver calls again once it made room
                    return
                try:
                    batch = self._async._take_arrived()
                except ChannelError as exc:
                    # However it ends, a receiver waiting here is told (never left hanging).
                    self._inbox_end = exc
                    self._arrived.notify_all()
                    return
                if not batch:
                    return
                if self._on_loop is not None and self._idle and not self._inbox:
                    taken = 0
                    for data in batch:
                        if not self._on_loop(data):
                            break
                        taken += 1
                    if taken == len(batch):
                        continue
                    del batch[:taken]
                self._inbox.extend(batch)
                self._inbox_bytes += sum(map(len, batch))
                self._arrived.notify()

    def __iter__(self) -> Iterator[bytes]:
        """Messages until the peer's clean close; an error end raises."""
        while True:
            try:
                batch = self.recv_many()
            except ChannelClosed:
                return
            yield from batch

    # --- ending ----------------------------------------------------------------

    def close(self, reason: str = "") -> None:
        """End the channel (see :meth:`AsyncChannel.close`); what was sent is delivered
        first on a clean close."""
        try:
            if not reason:
                self.flush()
        finally:
            self._runner.run(self._async.close(reason))
        # A loss _deliver met (and so the loop's channel counts as told) but that
        # never reached the application is raised here, as the channel would.
        with self._arrived:
            lost = self._inbox_end
            untold = not self._end_told and lost is not None and lost is self._async.failure
            self._end_told = self._end_told or untold
        if untold and not reason:
            raise lost

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close("" if kind is None else f"the other end failed ({kind.__name__})")


__all__ = ["Channel", "channel_loop"]
