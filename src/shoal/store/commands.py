"""Records of commands run on nodes for a client."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import commands
from shoal.store.upsert import upsert


async def put_commands(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await upsert(conn, commands, rows, ["id"])


async def list_commands(conn: AsyncConnection, experiment_id: str) -> list[dict[str, Any]]:
    query = (
        select(commands)
        .where(commands.c.experiment_id == experiment_id)
        .order_by(commands.c.started_at)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def delete_commands(conn: AsyncConnection, experiment_id: str) -> None:
    await conn.execute(delete(commands).where(commands.c.experiment_id == experiment_id))
