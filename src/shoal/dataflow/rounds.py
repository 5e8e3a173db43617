"""Rounds: lining up a job's inputs by sequence number.

Every value travels with a key ``(epoch, seq)``. A source numbers its values
0, 1, 2, ... within the current epoch; any other job gives its outputs the key
of the round that produced them. The coordinator starts a new epoch after a
failover, and keys compare as tuples, so values of an older epoch always come
before those of a newer one.

A round is the n-th value of every non-optional input. Pipes deliver in
order, so once one input has moved on to key k, nothing older than k can
complete any more: older values waiting on the other inputs are dropped and
the job skips those rounds. A lost or late value therefore costs the rounds
it belongs to, and the inputs line up again at the next key they all have.

A ``BLOCK_COUNT`` input gathers B consecutive values (keys ``(e, kB)`` to
``(e, kB + B - 1)``) into one list keyed by its last key; a block missing a
value is dropped. An optional input never holds a round back (see
:class:`shoal.dataflow.pipes.OptionalMixIn`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from shoal.dataflow.pipes import BasePipe
from shoal.dataflow.segments import Segment, items_of, values_in

Key = tuple[int, int]

_MISSING = object()


class _Required:
    def __init__(self, pipe: BasePipe, capacity: int) -> None:
        self.pipe = pipe
        size = getattr(pipe, "size", None)  # a BytesPipe: hold about 8 MB, not 4096 blocks
        self.capacity = max(16, min(capacity, (8 << 20) // size)) if size else capacity
        self.block = max(int(pipe.BLOCK_COUNT), 1)
        # (key, value, head) each; for the one plain input of a job (see
        # InputAligner.plain), the segments as they came instead: ``count``
        # values, of which the first ``offset`` of queue[0] are taken.
        self.queue: deque[Any] = deque()
        self.count = 0
        self.offset = 0
        self.gathering: list[Any] = []
        self.gathering_heads: list[int] = []
        self.gathering_key: Key | None = None
        self.ended = False

    def add(self, key: Key, value: Any, head: int = 0) -> None:
        if self.block == 1:
            self.queue.append((key, value, head))
            return
        epoch, seq = key
        block_key = (epoch, (seq // self.block) * self.block + self.block - 1)
        if block_key != self.gathering_key:
            # An unfinished block is dropped.
            self.gathering, self.gathering_heads, self.gathering_key = [], [], block_key
        self.gathering.append(value)
        self.gathering_heads.append(head)
        if len(self.gathering) == self.block:
            self.queue.append((block_key, self.gathering, self.gathering_heads))
            self.gathering, self.gathering_heads, self.gathering_key = [], [], None


class _Optional:
    def __init__(self, pipe: BasePipe) -> None:
        self.pipe = pipe
        self.buffer: deque[Any] = deque()
        self.last: Any = getattr(pipe, "OPTIONAL_DEFAULT", None)
        self.size = int(getattr(pipe, "OPTIONAL_BUFFER_SIZE", 0) or 0)
        mode = getattr(pipe, "OPTIONAL_DELETE_MODE", "oldest")
        if mode not in ("oldest", "newest"):
            raise ValueError(f"pipe {pipe.id}: OPTIONAL_DELETE_MODE must be 'oldest' or 'newest'")
        self.drop_oldest = mode == "oldest"

    def add(self, value: Any) -> None:
        if self.size and len(self.buffer) >= self.size:
            if not self.drop_oldest:
                return  # 'newest': the arriving value is the one dropped
            self.buffer.popleft()
        self.buffer.append(value)

    def take(self) -> Any:
        if self.buffer:
            self.last = self.buffer.popleft()
            return self.last
        store = getattr(self.pipe, "OPTIONAL_STORE", True)
        return self.last if store else self.pipe.OPTIONAL_DEFAULT


class InputAligner:
    """Thread-safe round builder for one job's inputs.

    Readers call :meth:`put` (blocking while a required input holds
    ``capacity`` values, which back-pressures the sender through TCP), the
    job calls :meth:`next_round`.
    """

    def __init__(self, pipes: Sequence[BasePipe], capacity: int = 4096) -> None:
        self.pipes = list(pipes)
        self.capacity = capacity
        self._slots: list[_Required | _Optional] = [
            _Optional(p) if p.OPTIONAL else _Required(p, capacity) for p in self.pipes
        ]
        self._index = {p.id: i for i, p in enumerate(self.pipes)}
        self._required = [s for s in self._slots if isinstance(s, _Required)]
        self._single = self._slots[0] if len(self._slots) == 1 and self._required else None
        # One input of single values: its items are the rounds, as they came.
        self.plain: _Required | None = (
            self._single if self._single is not None and self._single.block == 1 else None
        )
        # A plain lock for the common path (a Condition's own ``with`` runs Python
        # code); its Condition for waiting only.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stopped = False
        self._waiting = False
        self._putters_waiting = 0
        self.dropped = 0
        self._counter = 0

    def put(self, pipe_id: int, key: Key, value: Any) -> None:
        self.put_many(pipe_id, [(key, value)])

    def put_segments(self, pipe_id: int, segments: Sequence[Segment]) -> None:
        """Values of one pipe as they travel: runs of consecutive keys (:data:`Segment`)."""
        slot = self._slots[self._index[pipe_id]]
        if slot is self.plain:
            with self._lock:
                if slot.count >= slot.capacity and not self._stopped:
                    self._wait_for_room(slot)
                slot.queue.extend(segments)  # no tuple per value: rounds are read off them
                slot.count += values_in(segments)
                if self._waiting:
                    self._cond.notify_all()
            return
        if len(segments) == 1:
            self.put_many(pipe_id, items_of(segments[0]))
        else:
            self.put_many(pipe_id, chain.from_iterable(map(items_of, segments)))

    def put_many(self, pipe_id: int, items: Iterable[tuple[Any, ...]]) -> None:
        """Values of one pipe: ``(key, value)`` or ``(key, value, head)`` each."""
        slot = self._slots[self._index[pipe_id]]
        with self._lock:
            if isinstance(slot, _Optional):
                for item in items:
                    slot.add(item[1])
            else:
                if self._queued(slot) >= slot.capacity and not self._stopped:
                    self._wait_for_room(slot)
                if slot is self.plain:
                    for key, value, *head in items:
                        slot.queue.append([key[0], key[1], [value], head or None])
                        slot.count += 1
                else:
                    for item in items:
                        slot.add(item[0], item[1], item[2] if len(item) > 2 else 0)
            if self._waiting:
                self._cond.notify_all()

    def _wait_for_room(self, slot: _Required) -> None:
        """With the lock held: wait until the job took from a full queue."""
        self._putters_waiting += 1
        try:
            while self._queued(slot) >= slot.capacity and not self._stopped:
                self._cond.wait()
        finally:
            self._putters_waiting -= 1

    def _queued(self, slot: _Required) -> int:
        return slot.count if slot is self.plain else len(slot.queue)

    def next_segments(self) -> list[Segment]:
        """For one plain input (:attr:`plain`): what is queued, as the segments it
        came in (the rounds, in order); [] once it ended or stopped."""
        slot = self.plain
        assert slot is not None
        queue = slot.queue
        with self._lock:
            while not self._stopped:
                if queue:
                    found = list(queue)
                    queue.clear()
                    if slot.offset:  # next_rounds took the first values of the first
                        epoch, first, values, heads = found[0]
                        taken = slot.offset
                        found[0] = [epoch, first + taken, values[taken:], heads and heads[taken:]]
                        slot.offset = 0
                    slot.count = 0
                    if self._putters_waiting:
                        self._cond.notify_all()  # room for the blocked reader
                    return found
                if slot.ended:
                    return []
                self._waiting = True
                self._cond.wait()
                self._waiting = False
            return []

    def has_room(self, pipe_id: int) -> bool:
        """Whether :meth:`put_many` on this pipe would return at once (it waits only
        while the pipe's queue is full; one thread puts per pipe)."""
        slot = self._slots[self._index[pipe_id]]
        return isinstance(slot, _Optional) or self._queued(slot) < slot.capacity or self._stopped

    def end(self, pipe_id: int) -> None:
        """No more values will come on this pipe."""
        with self._lock:
            slot = self._slots[self._index[pipe_id]]
            if isinstance(slot, _Required):
                slot.ended = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._cond.notify_all()

    def next_round(self) -> tuple[Key, tuple[Any, ...]] | None:
        """The next complete round, or None once the inputs ended or :meth:`stop` was called."""
        found = self.next_rounds(1)
        return found[0] if found else None

    def next_rounds(self, limit: int = 256) -> list[tuple[Key, tuple[Any, ...]]]:
        """Up to ``limit`` complete rounds (at least one), or [] once the inputs ended or stopped.

        Taking what is ready in one go costs one lock round trip per batch, not per value.
        """
        return [(key, values) for key, values, _ in self.next_rounds_with_heads(limit)]

    def next_rounds_with_heads(
        self, limit: int = 256
    ) -> list[tuple[Key, tuple[Any, ...], tuple[Any, ...]]]:
        """Like :meth:`next_rounds`, each round with its inputs' heads (an int, or a
        list of ints for a ``BLOCK_COUNT`` input; 0 for an optional input)."""
        with self._lock:
            while True:
                if self._stopped:
                    return []
                found = []
                while len(found) < limit:
                    one = self._try_round()
                    if one is _MISSING:
                        break
                    found.append(one)
                if found:
                    return found
                if self._finished():
                    return []
                self._waiting = True
                self._cond.wait()
                self._waiting = False

    def _plain_round(self, slot: _Required) -> Any:
        """One round off the first queued segment of the plain input."""
        epoch, first, values, heads = slot.queue[0]
        taken = slot.offset
        round_ = (epoch, first + taken), (values[taken],), (heads[taken] if heads else 0,)
        slot.count -= 1
        if taken + 1 == len(values):
            slot.queue.popleft()
            slot.offset = 0
        else:
            slot.offset = taken + 1
        return round_

    def _finished(self) -> bool:
        if not self._required:
            return False
        return any(s.ended and not s.queue for s in self._required)

    def _try_round(self) -> Any:
        if self._single is not None:
            # The common case, one plain input: no alignment to do.
            if not self._single.queue:
                return _MISSING
            if self._putters_waiting:
                self._cond.notify_all()
            if self._single is self.plain:
                return self._plain_round(self._single)
            key, value, head = self._single.queue.popleft()
            return key, (value,), (head,)
        if not self._required:
            # Only optional inputs: a round whenever any of them has news.
            if not any(s.buffer for s in self._slots if isinstance(s, _Optional)):
                return _MISSING
            self._counter += 1
            key: Key = (0, self._counter)
        else:
            if any(not s.queue for s in self._required):
                return _MISSING
            key = max(s.queue[0][0] for s in self._required)
            for slot in self._required:
                while slot.queue and slot.queue[0][0] < key:
                    slot.queue.popleft()
                    self.dropped += 1
                if not slot.queue:
                    if self._putters_waiting:
                        self._cond.notify_all()  # room freed for a blocked reader
                    return _MISSING
            if any(s.queue[0][0] != key for s in self._required):
                return _MISSING
        values, heads = [], []
        for slot in self._slots:
            if isinstance(slot, _Optional):
                values.append(slot.take())
                heads.append(0)
            else:
                _, value, head = slot.queue.popleft()
                values.append(value)
                heads.append(head)
        if self._putters_waiting:
            self._cond.notify_all()
        return key, tuple(values), tuple(heads)
