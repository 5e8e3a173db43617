"""The flag service: set, get, atomic add, and waits woken by the change.

A flag lives in memory for speed and is written to the store before any call
that changed it returns, so an acknowledged change survives a restart.

Changes are committed in groups: callers queue their operation and one writer
takes everything queued, computes each result in order from the stored state,
writes the final value of every flag it touched in one transaction and only
then changes memory, wakes waiters and answers each caller (group commit). A
store fault answers every caller of the batch with the fault and leaves memory
as it was. Under load a transaction carries hundreds of operations, so the
store's commit rate stops being the flags' operation rate.

Every change gets a version. A wait names the last version its caller has
seen (``after``) and matches any value the flag took since then, not only the
current one: a barrier like "wait for (stage 1, 0)" cannot be missed because
another node incremented the flag a millisecond before this one asked. That is
what makes the seeds' barrier protocols deterministic at shoal's speed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from dataclasses import dataclass, field

from shoal.controller.changes import ChangeFeed
from shoal.controller.errors import not_found
from shoal.store import flags as flag_queries
from shoal.store.database import Database
from shoal.store.faults import StoreError, StoreUnavailable

log = logging.getLogger("shoal.controller.flags")

FlagKey = tuple[str, str]  # (experiment id, flag name)
Values = tuple[str | None, int | None]
HISTORY = 4096  # values kept per flag for waiters that are behind
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what every store's integer column holds
# Operations per transaction at most: a bigger batch would hold the store (and,
# on SQLite, every other writer) for longer than its callers gain.
MAX_BATCH = 2000


class FlagRangeError(ValueError):
    """An atomic add would take a flag's int value out of the storable range."""


@dataclass
class Flag:
    values: Values | None = None
    version: int = 0
    history: deque[tuple[int, Values]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    waiters: list[tuple[Values, asyncio.Future[tuple[Values, int]]]] = field(default_factory=list)


@dataclass
class _Change:
    """One queued set (``delta`` None) or atomic add, and its caller's answer."""

    key: FlagKey
    flag: Flag
    values: Values | None
    delta: int | None
    answer: asyncio.Future[tuple[Values, int]]


class FlagService:
    """The flags of all experiments: memory for speed, the store for durability.

    ``run`` is the one writer; it must be running (the controller's lifespan
    owns it) for ``set`` and ``add`` to be answered.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._flags: dict[FlagKey, Flag] = {}
        self._loading: defaultdict[FlagKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.ops: defaultdict[str, int] = defaultdict(int)  # by kind, for /metrics
        self._queue: list[_Change] = []
        self._queued = asyncio.Event()
        self._writing = False
        self._writer = flag_queries.FlagWriter(db)
        self.feed = ChangeFeed()  # experiments whose flags changed, for the dashboard

    async def _flag(self, experiment_id: str, name: str) -> Flag:
        key = (experiment_id, name)
        flag = self._flags.get(key)
        if flag is not None:
            return flag
        async with self._loading[key]:
            flag = self._flags.get(key)
            if flag is None:
                async with self.db.read() as conn:
                    stored = await flag_queries.get_flag(conn, experiment_id, name)
                flag = Flag()
                if stored is not None:
                    flag.values, flag.version = (stored[0], stored[1]), stored[2]
                    flag.history.append((flag.version, flag.values))
                self._flags[key] = flag
            self._loading.pop(key, None)
        return flag

    async def get(self, experiment_id: str, name: str) -> tuple[Values | None, int]:
        self.ops["get"] += 1
        flag = await self._flag(experiment_id, name)
        return flag.values, flag.version

    async def set(self, experiment_id: str, name: str, values: Values) -> tuple[Values, int]:
        """Set both values; (values, version) once the change is durable."""
        self.ops["set"] += 1
        return await self._submit(experiment_id, name, values, None)

    async def add(self, experiment_id: str, name: str, delta: int) -> tuple[Values, int]:
        """Atomically add ``delta`` to the int value (a missing value counts as 0).

        Raises ``FlagRangeError`` if the sum would leave the storable range.
        """
        self.ops["add"] += 1
        return await self._submit(experiment_id, name, None, delta)

    async def wait(
        self, experiment_id: str, name: str, target: Values, after: int, timeout: float
    ) -> tuple[Values, int] | None:
        """The first value equal to ``target`` with a version above ``after``.

        Returns (values, version), or None if ``timeout`` passes first.
        """
        self.ops["wait"] += 1
        flag = await self._flag(experiment_id, name)
        for version, values in flag.history:
            if version > after and values == target:
                return values, version
        future: asyncio.Future[tuple[Values, int]] = asyncio.get_running_loop().create_future()
        entry = (target, future)
        flag.waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            if entry in flag.waiters:
                flag.waiters.remove(entry)

    async def next_after(
        self, experiment_id: str, name: str, after: int
    ) -> tuple[Values | None, int]:
        """The first value with a version above ``after``, or the current one if none is.

        For readers that poll and compare on their side (netUnicorn's flag
        tasks): reading "the next change you have not seen" lets such a poller
        observe every value, however briefly the flag held it.
        """
        self.ops["next_after"] += 1
        flag = await self._flag(experiment_id, name)
        for version, values in flag.history:
            if version > after:
                return values, version
        return flag.values, flag.version

    async def list(self, experiment_id: str) -> dict[str, Values]:
        self.ops["list"] += 1
        async with self.db.read() as conn:
            stored = await flag_queries.list_flags(conn, experiment_id)
        out: dict[str, Values] = {name: (s[0], s[1]) for name, s in stored.items()}
        for (exp, name), flag in self._flags.items():
            if exp == experiment_id and flag.values is not None:
                out[name] = flag.values
        return dict(sorted(out.items()))

    def drop_experiment(self, experiment_id: str) -> None:
        for key in [k for k in self._flags if k[0] == experiment_id]:
            del self._flags[key]

    async def run(self) -> None:
        """The writer: commit what callers queued, a batch per transaction, until cancelled."""
        self._writing = True
        try:
            while True:
                await self._queued.wait()
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                if not self._queue:
                    self._queued.clear()
                await self._commit(batch)
        finally:
            self._writing = False
            stopping = StoreUnavailable("the controller is shutting down")
            for change in self._queue:
                if not change.answer.done():
                    change.answer.set_exception(stopping)
            self._queue.clear()
            await self._writer.close()

    async def _submit(
        self, experiment_id: str, name: str, values: Values | None, delta: int | None
    ) -> tuple[Values, int]:
        if not self._writing:
            raise StoreUnavailable("the flag writer is not running")
        key = (experiment_id, name)
        flag = await self._flag(experiment_id, name)
        answer: asyncio.Future[tuple[Values, int]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Change(key, flag, values, delta, answer))
        self._queued.set()
        return await answer

    async def _commit(self, batch: list[_Change], split: bool = True) -> None:
        """Store ``batch`` in one transaction, then change memory and answer its callers.

        Each change is computed from the state the changes before it left, in
        the order they were queued: adds stay atomic without a lock, because
        this is the only place flags change.
        """
        staged: dict[FlagKey, tuple[Values, int]] = {}
        done: list[tuple[_Change, Values, int]] = []
        try:
            for change in batch:
                if self._flags.get(change.key) is not change.flag:
                    # The experiment was deleted after the change was queued.
                    _answer_error(change, not_found("experiment was deleted"))
                    continue
                before, version = staged.get(change.key, (change.flag.values, change.flag.version))
                if change.delta is None:
                    assert change.values is not None
                    values = change.values
                else:
                    text, number = before if before else (None, None)
                    new = (number or 0) + change.delta
                    if not INT_MIN <= new <= INT_MAX:
                        _answer_error(
                            change,
                            FlagRangeError(
                                f"flag {change.key[1]!r} holds {number or 0}: adding "
                                f"{change.delta} would leave the range of flag values "
                                f"({INT_MIN} to {INT_MAX})"
                            ),
                        )
                        continue
                    values = (text, new)
                staged[change.key] = (values, version + 1)
                done.append((change, values, version + 1))
            if staged:
                rows = [(*key, *values, version) for key, (values, version) in staged.items()]
                await self._writer.put(rows)
        except StoreError as fault:
            # Nothing is in memory yet: every caller learns the change did not happen.
            for change, _values, _version in done:
                _answer_error(change, fault)
            return
        except Exception as exc:
            if split and len(staged) > 1:
                # A bug or a constraint one flag broke: commit the flags one by
                # one, so only that flag's callers get the error.
                for key in staged:
                    await self._commit([c for c in batch if c.key == key], split=False)
                return
            log.exception("storing %d flag changes failed", len(done))
            for change, _values, _version in done:
                _answer_error(change, exc)
            return
        except BaseException:
            # Cancelled while writing (the controller stops): the callers must not hang.
            for change, _values, _version in done:
                _answer_error(change, StoreUnavailable("the controller is shutting down"))
            raise
        for change, values, version in done:
            flag = change.flag
            flag.values, flag.version = values, version
            flag.history.append((version, values))
            for target, future in flag.waiters:
                if target == values and not future.done():
                    future.set_result((values, version))
            if not change.answer.done():
                change.answer.set_result((values, version))
        self.feed.touch(key[0] for key in staged)


def _answer_error(change: _Change, error: BaseException) -> None:
    if not change.answer.done():
        change.answer.set_exception(error)
