"""When the store cannot be reached or written: what went wrong, and waiting it out.

A database that is down, restarting or out of disk space is a passing state of
the world, not a bug: callers get one exception type for it (``StoreError``),
whose message a user may read, and the controller's long-lived loops retry
with :func:`retry_store` instead of crashing. Everything else a driver raises
(a constraint violated, bad SQL) is a bug and is left alone.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy.exc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential_jitter,
)

log = logging.getLogger("shoal.store")

T = TypeVar("T")

#: The longest pause between two attempts while the store is away.
RETRY_MAX_WAIT = 2.0
#: At most one log line per kind of failure and per activity in this many seconds.
LOG_INTERVAL = 30.0

_SQLITE_FULL = 13
_SQLITE_IOERR = 10
# busy, locked, readonly, nomem, cantopen, protocol: the file is there but cannot be used now
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 14, 15})
# PostgreSQL SQLSTATE classes: connection exception, insufficient resources,
# operator intervention (shutdown, starting up), system error (I/O)
_PG_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58"})
_PG_DISK_FULL = "53100"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StoreError(Exception):
    """The store cannot take or give data right now; trying again later may work.

    ``message`` is safe to show a user: it never carries SQL or parameters.
    """

    kind = "unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def message(self) -> str:
        return f"controller storage unavailable: {self.reason}"


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, restarting, connection lost)."""


class StoreFull(StoreError):
    """The disk (or quota) under the store is full: nothing new can be written."""

    kind = "full"

    @property
    def message(self) -> str:
        return "controller storage full"


def classify(exc: BaseException, sqlite_path: str | None = None) -> StoreError | None:
    """The store fault ``exc`` stands for, or None when it is not one (a bug, bad input).

    ``sqlite_path`` is the SQLite database file, used to tell a full disk from
    another I/O error.
    """
    if isinstance(exc, StoreError):
        return exc
    cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _classify_sqlite(code & 0xFF, str(cause), sqlite_path)
    sqlstate = getattr(cause, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        if sqlstate == _PG_DISK_FULL:
            return StoreFull(_first_line(cause))
        if sqlstate[:2] in _PG_UNAVAILABLE_CLASSES:
            return StoreUnavailable(_first_line(cause))
        return None
    if isinstance(cause, OSError):
        if cause.errno in _FULL_ERRNOS:
            return StoreFull(_first_line(cause))
        return StoreUnavailable(f"cannot reach the database ({_first_line(cause)})")
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return StoreUnavailable(f"the database connection was lost ({_first_line(cause)})")
    if isinstance(
        exc,
        sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | sqlalchemy.exc.DisconnectionError
        | sqlalchemy.exc.TimeoutError,
    ):
        return StoreUnavailable(_first_line(cause))
    if _is_asyncpg_interface_error(cause):
        return StoreUnavailable(f"the database connection was lost ({_first_line(cause)})")
    return None


def _classify_sqlite(code: int, text: str, path: str | None) -> StoreError | None:
    if code == _SQLITE_FULL:
        return StoreFull(text)
    if code == _SQLITE_IOERR:
        # SQLite reports some writes that ran out of space (WAL, shared memory)
        # as plain I/O errors; the file system says which it was.
        return StoreFull(text) if path and _no_space_left(path) else StoreUnavailable(text)
    if code in _SQLITE_UNAVAILABLE:
        return StoreUnavailable(text)
    return None


def _no_space_left(path: str) -> bool:
    try:
        stats = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 64 * 1024


def _is_asyncpg_interface_error(exc: BaseException) -> bool:
    try:
        from asyncpg.exceptions import InterfaceError
    except ImportError:  # asyncpg is only needed for PostgreSQL
        return False
    return isinstance(exc, InterfaceError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


class FaultLog:
    """Logs store failures without flooding: one line per kind and activity per interval.

    A loop that retries every second during a ten-minute outage writes a
    handful of lines (with how many were left out), not a traceback per try.
    """

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self.log = logger
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._left_out: dict[tuple[str, str], int] = {}

    def failed(self, what: str, fault: StoreError) -> None:
        key = (fault.kind, what)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return
        self._last[key] = now
        left_out = self._left_out.pop(key, 0)
        more = f" ({left_out} more failures since the last report)" if left_out else ""
        self.log.warning("%s while %s%s", fault.message, what, more)

    def recovered(self, what: str) -> None:
        keys = [key for key in self._last if key[1] == what]
        if keys:
            for key in keys:
                self._last.pop(key, None)
                self._left_out.pop(key, None)
            self.log.warning("controller storage is back: %s again", what)


faults = FaultLog(log)


async def retry_store(
    call: Callable[[], Awaitable[T]], what: str, patience: float | None = None
) -> T:
    """Await ``call()`` until the store takes it; what it returned.

    Only ``StoreError`` is retried (with a growing pause up to
    ``RETRY_MAX_WAIT``), so ``call`` must leave memory as it was when it
    fails: the service methods do. After ``patience`` seconds (None: for as
    long as the caller waits) the last ``StoreError`` is raised.
    """

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, StoreError):
            faults.failed(what, exc)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(StoreError),
        wait=wait_exponential_jitter(initial=0.05, max=RETRY_MAX_WAIT),
        stop=stop_never if patience is None else stop_after_delay(patience),
        before_sleep=note,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            result = await call()
    # The loop ends only after an attempt that did not raise.
    if attempt.retry_state.attempt_number > 1:
        faults.recovered(what)
    return result  # type: ignore[possibly-undefined]
