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

Callers that cannot spare a task per operation (executors' calls relayed by
their agents, thousands a second) use :meth:`FlagService.change` and
:meth:`FlagService.watch`, which take a callback instead of being awaited.

Every change gets a version. A wait names the last version its caller has
seen (``after``) and matches any value the flag took since then, not only the
current one: a barrier like "wait for (stage 1, 0)" cannot be missed because
another node incremented the flag a millisecond before this one asked. That is
what makes the seeds' barrier protocols deterministic at shoal's speed.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoal.controller.changes import ChangeFeed
from shoal.controller.errors import not_found
from shoal.store import flags as flag_queries
from shoal.store.database import Database
from shoal.store.faults import StoreError, StoreUnavailable

log = logging.getLogger("shoal.controller.flags")

FlagKey = tuple[str, str]  # (experiment id, flag name)
Values = tuple[str | None, int | None]
State = tuple[Values, int]  # values and the version they have
# Called once with the change's state once it is durable, or with why it failed.
Reply = Callable[[State | BaseException], None]
# Called once with the matching state, or with None when the wait timed out.
WaitReply = Callable[[State | None], None]
HISTORY = 4096  # values kept per flag for waiters that are behind
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what every store's integer column holds
# Operations per transaction at most: a bigger batch would hold the store (and,
# on SQLite, every other writer) for longer than its callers gain.
MAX_BATCH = 2000
NAMES_KEPT = 100_000  # experiment names remembered for the flags REST API


class FlagRangeError(ValueError):
    """An atomic add would take a flag's int value out of the storable range."""


@dataclass(slots=True)
class FlagWaiter:
    """One wait for a value; ``timer`` ends it with None."""

    target: Values
    reply: WaitReply
    timer: asyncio.TimerHandle | None = None


@dataclass
class Flag:
    values: Values | None = None
    version: int = 0
    history: deque[tuple[int, Values]] = field(default_factory=deque)
    # The versions in ``history`` of each value, oldest first: a wait finds the
    # first match after its version without reading the history (a thousand
    # nodes waiting at a barrier would each read the thousand changes before).
    versions_of: dict[Values, list[int]] = field(default_factory=dict)
    # by the value they wait for: a change wakes its waiters without looking at the others
    waiters: dict[Values, list[FlagWaiter]] = field(default_factory=dict)

    def took(self, version: int, values: Values) -> None:
        """The flag has ``values`` at ``version`` (newer than any before): keep
        it in the history, forgetting the oldest past ``HISTORY``."""
        if len(self.history) >= HISTORY:
            _old, gone = self.history.popleft()
            versions = self.versions_of[gone]
            del versions[0]
            if not versions:
                del self.versions_of[gone]
        self.history.append((version, values))
        self.versions_of.setdefault(values, []).append(version)

    def first_since(self, target: Values, after: int) -> int | None:
        """The first version above ``after`` at which the flag held ``target``, if kept."""
        versions = self.versions_of.get(target)
        if not versions:
            return None
        i = bisect.bisect_right(versions, after)
        return versions[i] if i < len(versions) else None


@dataclass(slots=True)
class _Change:
    """One queued set (``delta`` None) or atomic add, and how to answer its caller."""

    key: FlagKey
    flag: Flag
    values: Values | None
    delta: int | None
    reply: Reply


class FlagService:
    """The flags of all experiments: memory for speed, the store for durability.

    ``run`` is the one writer; it must be running (the controller's lifespan
    owns it) for changes to be answered.
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
        # (owner, experiment name) -> experiment id, learnt in ``_names_epoch``
        self._names: dict[tuple[int, str], str] = {}
        self._names_epoch: tuple[int, int] | None = None
        self._drops = 0

    # ------------------------------------------------------------ lookups

    def names_epoch(self, revocations: int) -> tuple[int, int]:
        """What ``experiment_named`` answers for: the authenticator's revocations
        (a removed user's id may be given to a new user) and the experiments
        dropped here so far. Take it before asking the store."""
        return revocations, self._drops

    def experiment_named(self, owner_id: int, name: str, epoch: tuple[int, int]) -> str | None:
        """The id of ``owner_id``'s experiment ``name`` if the store told it in this epoch.

        Spares the REST API a store read per operation; a deleted or replaced
        experiment (``drop_experiment``) ends the epoch.
        """
        if epoch != self._names_epoch:
            self._names.clear()
            self._names_epoch = epoch
            return None
        return self._names.get((owner_id, name))

    def remember_name(
        self, owner_id: int, name: str, experiment_id: str, epoch: tuple[int, int]
    ) -> None:
        """Remember what the store said in ``epoch`` ``owner_id``'s experiment ``name`` is;
        forgotten if the epoch ended while the store was asked."""
        if epoch != self._names_epoch:
            return
        if len(self._names) >= NAMES_KEPT:
            self._names.clear()
        self._names[(owner_id, name)] = experiment_id

    def loaded(self, experiment_id: str, name: str) -> Flag | None:
        """The flag if it is in memory already (then no store read is needed)."""
        return self._flags.get((experiment_id, name))

    async def load(self, experiment_id: str, name: str) -> Flag:
        """The flag, read from the store the first time it is used."""
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
                    flag.took(flag.version, flag.values)
                self._flags[key] = flag
            self._loading.pop(key, None)
        return flag

    # ------------------------------------------------------ awaited calls

    async def get(self, experiment_id: str, name: str) -> tuple[Values | None, int]:
        self.ops["get"] += 1
        flag = await self.load(experiment_id, name)
        return flag.values, flag.version

    async def set(self, experiment_id: str, name: str, values: Values) -> State:
        """Set both values; (values, version) once the change is durable."""
        return await self._changed(experiment_id, name, values, None)

    async def add(self, experiment_id: str, name: str, delta: int) -> State:
        """Atomically add ``delta`` to the int value (a missing value counts as 0).

        Raises ``FlagRangeError`` if the sum would leave the storable range.
        """
        return await self._changed(experiment_id, name, None, delta)

    async def wait(
        self, experiment_id: str, name: str, target: Values, after: int, timeout: float
    ) -> State | None:
        """The first value equal to ``target`` with a version above ``after``.

        Returns (values, version), or None if ``timeout`` passes first.
        """
        flag = await self.load(experiment_id, name)
        future: asyncio.Future[State | None] = asyncio.get_running_loop().create_future()
        waiter = self.watch(flag, target, after, timeout, _settle_wait(future))
        try:
            return await future
        finally:
            if waiter is not None:
                self.unwatch(flag, waiter)

    async def next_after(
        self, experiment_id: str, name: str, after: int
    ) -> tuple[Values | None, int]:
        """The first value with a version above ``after``, or the current one if none is.

        For readers that poll and compare on their side (netUnicorn's flag
        tasks): reading "the next change you have not seen" lets such a poller
        observe every value, however briefly the flag held it.
        """
        self.ops["next_after"] += 1
        flag = await self.load(experiment_id, name)
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
        """Forget a deleted (or replaced) experiment's flags and every name learnt so far."""
        for key in [k for k in self._flags if k[0] == experiment_id]:
            del self._flags[key]
        # A name looked up before the deletion must not be remembered after it.
        self._drops += 1
        self._names.clear()
        self._names_epoch = None

    async def _changed(
        self, experiment_id: str, name: str, values: Values | None, delta: int | None
    ) -> State:
        if not self._writing:
            raise StoreUnavailable("the flag writer is not running")
        flag = await self.load(experiment_id, name)
        future: asyncio.Future[State] = asyncio.get_running_loop().create_future()
        self.change(experiment_id, name, flag, values, delta, _settle(future))
        return await future

    # ------------------------------------------------------- callback calls

    def change(
        self,
        experiment_id: str,
        name: str,
        flag: Flag,
        values: Values | None,
        delta: int | None,
        reply: Reply,
    ) -> None:
        """Queue a set (``values``) or an add (``delta``) of a loaded ``flag``;
        ``reply`` gets the state once the change is durable, or the error."""
        self.ops["set" if delta is None else "add"] += 1
        if not self._writing:
            reply(StoreUnavailable("the flag writer is not running"))
            return
        self._queue.append(_Change((experiment_id, name), flag, values, delta, reply))
        self._queued.set()

    def watch(
        self, flag: Flag, target: Values, after: int, timeout: float, reply: WaitReply
    ) -> FlagWaiter | None:
        """Call ``reply`` with the first state of ``flag`` equal to ``target`` at a
        version above ``after``, or with None after ``timeout`` seconds.

        Answers at once (and returns None) when the flag took that value
        already; else returns the waiter, which ``unwatch`` withdraws.
        """
        self.ops["wait"] += 1
        version = flag.first_since(target, after)
        if version is not None:
            reply((target, version))
            return None
        waiter = FlagWaiter(target, reply)
        flag.waiters.setdefault(target, []).append(waiter)
        waiter.timer = asyncio.get_running_loop().call_later(timeout, self._expire, flag, waiter)
        return waiter

    def unwatch(self, flag: Flag, waiter: FlagWaiter) -> None:
        """Withdraw a wait that has not been answered (no reply follows)."""
        if waiter.timer is not None:
            waiter.timer.cancel()
        same = flag.waiters.get(waiter.target)
        if same is not None and waiter in same:
            same.remove(waiter)
            if not same:
                del flag.waiters[waiter.target]

    def _expire(self, flag: Flag, waiter: FlagWaiter) -> None:
        self.unwatch(flag, waiter)
        _deliver(waiter.reply, None)

    # ----------------------------------------------------------- the writer

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
                _deliver(change.reply, stopping)
            self._queue.clear()
            await self._writer.close()

    async def _commit(self, batch: list[_Change], split: bool = True) -> None:
        """Store ``batch`` in one transaction, then change memory and answer its callers.

        Each change is computed from the state the changes before it left, in
        the order they were queued: adds stay atomic without a lock, because
        this is the only place flags change. However many changes a flag got in
        the batch, the store gets its final state once, and each caller its own
        result.
        """
        staged: dict[FlagKey, State] = {}
        done: list[tuple[_Change, Values, int]] = []
        try:
            for change in batch:
                if self._flags.get(change.key) is not change.flag:
                    # The experiment was deleted after the change was queued.
                    _deliver(change.reply, not_found("experiment was deleted"))
                    continue
                before, version = staged.get(change.key, (change.flag.values, change.flag.version))
                if change.delta is None:
                    assert change.values is not None
                    values = change.values
                else:
                    text, number = before if before else (None, None)
                    new = (number or 0) + change.delta
                    if not INT_MIN <= new <= INT_MAX:
                        _deliver(
                            change.reply,
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
                _deliver(change.reply, fault)
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
                _deliver(change.reply, exc)
            return
        except BaseException:
            # Cancelled while writing (the controller stops): the callers must not hang.
            for change, _values, _version in done:
                _deliver(change.reply, StoreUnavailable("the controller is shutting down"))
            raise
        for change, values, version in done:
            flag = change.flag
            flag.values, flag.version = values, version
            flag.took(version, values)
            woken = flag.waiters.pop(values, None) if flag.waiters else None
            if woken:
                for waiter in woken:
                    if waiter.timer is not None:
                        waiter.timer.cancel()
                    _deliver(waiter.reply, (values, version))
            _deliver(change.reply, (values, version))
        self.feed.touch(key[0] for key in staged)


def _deliver(reply: Callable[[Any], None], outcome: Any) -> None:
    """Answer one caller; a failing answer must not keep the others from theirs."""
    try:
        reply(outcome)
    except Exception:
        log.exception("answering a flag call failed")


def _settle(future: asyncio.Future[State]) -> Reply:
    def reply(outcome: State | BaseException) -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    return reply


def _settle_wait(future: asyncio.Future[State | None]) -> WaitReply:
    def reply(outcome: State | None) -> None:
        if not future.done():
            future.set_result(outcome)

    return reply
