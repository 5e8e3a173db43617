"""The flag service: set, get, atomic add, and waits woken by the change.

A flag lives in memory for speed and is written to the store before any call
that changed it returns, so an acknowledged change survives a restart.

Every change gets a version. A wait names the last version its caller has
seen (``after``) and matches any value the flag took since then, not only the
current one: a barrier like "wait for (stage 1, 0)" cannot be missed because
another node incremented the flag a millisecond before this one asked. That is
what makes the seeds' barrier protocols deterministic at shoal's speed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from dataclasses import dataclass, field

from shoal.store import flags as flag_queries
from shoal.store.database import Database

FlagKey = tuple[str, str]  # (experiment id, flag name)
Values = tuple[str | None, int | None]
HISTORY = 4096  # values kept per flag for waiters that are behind
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what every store's integer column holds


class FlagRangeError(ValueError):
    """An atomic add would take a flag's int value out of the storable range."""


@dataclass
class Flag:
    values: Values | None = None
    version: int = 0
    history: deque[tuple[int, Values]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiters: list[tuple[Values, asyncio.Future[tuple[Values, int]]]] = field(default_factory=list)


class FlagService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._flags: dict[FlagKey, Flag] = {}
        self._loading: defaultdict[FlagKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.ops: defaultdict[str, int] = defaultdict(int)  # by kind, for /metrics

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
        self.ops["set"] += 1
        flag = await self._flag(experiment_id, name)
        async with flag.lock:
            return await self._store(experiment_id, name, flag, values)

    async def add(self, experiment_id: str, name: str, delta: int) -> tuple[Values, int]:
        """Atomically add ``delta`` to the int value (a missing value counts as 0)."""
        self.ops["add"] += 1
        flag = await self._flag(experiment_id, name)
        async with flag.lock:
            text, number = flag.values if flag.values else (None, None)
            new = (number or 0) + delta
            # Checked under the lock: two adds at the limit cannot both pass.
            if not INT_MIN <= new <= INT_MAX:
                raise FlagRangeError(
                    f"flag {name!r} holds {number or 0}: adding {delta} would leave the range "
                    f"of flag values ({INT_MIN} to {INT_MAX})"
                )
            return await self._store(experiment_id, name, flag, (text, new))

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

    async def _store(
        self, experiment_id: str, name: str, flag: Flag, values: Values
    ) -> tuple[Values, int]:
        version = flag.version + 1
        async with self.db.write() as conn:
            await flag_queries.put_flag(conn, experiment_id, name, values[0], values[1], version)
        flag.values, flag.version = values, version
        flag.history.append((version, values))
        for target, future in flag.waiters:
            if target == values and not future.done():
                future.set_result((values, version))
        return values, version
