"""Flags: per-experiment named (text_value, int_value) pairs, with a change counter."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.database import Database
from shoal.store.faults import StoreError, classify
from shoal.store.tables import flags
from shoal.store.upsert import upsert

StoredFlag = tuple[str | None, int | None, int]  # text, int, version
FlagRow = tuple[str, str, str | None, int | None, int]  # experiment id, name, text, int, version


async def get_flag(conn: AsyncConnection, experiment_id: str, name: str) -> StoredFlag | None:
    query = select(flags.c.text_value, flags.c.int_value, flags.c.version).where(
        flags.c.experiment_id == experiment_id, flags.c.name == name
    )
    row = (await conn.execute(query)).first()
    return (row[0], row[1], row[2]) if row else None


async def list_flags(conn: AsyncConnection, experiment_id: str) -> dict[str, StoredFlag]:
    query = (
        select(flags.c.name, flags.c.text_value, flags.c.int_value, flags.c.version)
        .where(flags.c.experiment_id == experiment_id)
        .order_by(flags.c.name)
    )
    return {r[0]: (r[1], r[2], r[3]) for r in await conn.execute(query)}


async def put_flags(conn: AsyncConnection, rows: list[FlagRow]) -> None:
    """Write many flags in one statement: (experiment id, name, text, int, version) each.

    At most a few thousand rows: every store takes that many parameters in one statement.
    """
    values = [
        {
            "experiment_id": experiment_id,
            "name": name,
            "text_value": text_value,
            "int_value": int_value,
            "version": version,
        }
        for experiment_id, name, text_value, int_value, version in rows
    ]
    await upsert(conn, flags, values, ["experiment_id", "name"])


CLOSE_TIMEOUT = 5.0  # seconds to give a held connection back to the pool

# One statement, committed on its own: on PostgreSQL a batch of flags costs one
# round trip (no BEGIN, no COMMIT, no pool check-out), which is what lets the
# flag writer commit thousands of operations a second.
_PUT_FLAGS_PG = f"""
INSERT INTO {flags.name} (experiment_id, name, text_value, int_value, version)
SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::text[], $4::int[], $5::int[])
ON CONFLICT (experiment_id, name) DO UPDATE SET
    text_value = excluded.text_value, int_value = excluded.int_value, version = excluded.version
"""


class FlagWriter:
    """Stores batches of flag changes for the one flag writer of a controller.

    On PostgreSQL (asyncpg) it keeps one pooled connection checked out and
    writes a batch as a single self-committing statement; a failed write
    returns that connection to the pool invalidated, and the next batch checks
    out a fresh one. Elsewhere a batch is a transaction of :meth:`Database.write`.
    Either way the batch is durable when :meth:`put` returns; store faults
    raise ``StoreError``.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._direct = not db.is_sqlite and db.engine.dialect.driver == "asyncpg"
        self._conn: AsyncConnection | None = None
        self._raw: Any = None  # the asyncpg connection under ``_conn``

    async def put(self, rows: list[FlagRow]) -> None:
        """Store ``rows`` (experiment id, name, text, int, version) in one transaction."""
        if not self._direct:
            async with self.db.write() as conn:
                await put_flags(conn, rows)
            return
        start = time.perf_counter()
        columns = [list(column) for column in zip(*rows, strict=True)]
        reused = self._raw is not None
        try:
            await self._execute(columns)
        except StoreError:
            if not reused:
                raise
            # The held connection may have died while idle (the server restarted),
            # which a pool check-out would have noticed. Writing final values is
            # idempotent, so the batch is written again on a fresh connection.
            await self._execute(columns)
        if self.db.on_write is not None:
            self.db.on_write(time.perf_counter() - start)

    async def _execute(self, columns: list[list[Any]]) -> None:
        try:
            raw = await self._connection()
            await raw.execute(_PUT_FLAGS_PG, *columns)
        except Exception as exc:
            fault = classify(exc, None)
            if fault is None:
                raise  # the statement was refused (a bug, a row): the connection is fine
            await self._drop()
            if fault is not exc:
                raise fault from exc
            raise

    async def close(self) -> None:
        """Give the held connection back to the pool."""
        await self._drop(invalidate=False)

    async def _connection(self) -> Any:
        if self._raw is None:
            conn = await self.db.engine.connect()
            try:
                self._raw = (await conn.get_raw_connection()).driver_connection
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._raw

    async def _drop(self, invalidate: bool = True) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is None:
            return
        # A dead server must not hold up a controller that is stopping.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if invalidate:
                    await conn.invalidate()
                await conn.close()
