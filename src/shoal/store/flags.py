"""Flags: per-experiment named (text_value, int_value) pairs, with a change counter."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import flags
from shoal.store.upsert import upsert

StoredFlag = tuple[str | None, int | None, int]  # text, int, version


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


async def put_flags(
    conn: AsyncConnection, rows: list[tuple[str, str, str | None, int | None, int]]
) -> None:
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
