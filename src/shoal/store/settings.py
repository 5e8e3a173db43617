"""Key/value settings of a controller (e.g. the agent join token)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import settings
from shoal.store.upsert import upsert


async def get_setting(conn: AsyncConnection, key: str) -> str | None:
    row = (await conn.execute(select(settings.c.value).where(settings.c.key == key))).first()
    return row[0] if row else None


async def set_setting(conn: AsyncConnection, key: str, value: str) -> None:
    await upsert(conn, settings, {"key": key, "value": value}, ["key"])


async def delete_setting(conn: AsyncConnection, key: str) -> None:
    await conn.execute(delete(settings).where(settings.c.key == key))
