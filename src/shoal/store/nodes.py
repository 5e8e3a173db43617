"""Nodes as last reported by their agents."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import nodes
from shoal.store.upsert import upsert


async def put_node(
    conn: AsyncConnection,
    name: str,
    architecture: str,
    cpus: int,
    properties: dict[str, Any],
) -> None:
    row = {
        "name": name,
        "architecture": architecture,
        "cpus": cpus,
        "properties": properties,
        "online": True,
        "last_seen": time.time(),
        "metrics": {},
    }
    await upsert(conn, nodes, row, ["name"])


async def set_offline(conn: AsyncConnection, name: str) -> None:
    await conn.execute(update(nodes).where(nodes.c.name == name).values(online=False))


async def mark_all_offline(conn: AsyncConnection) -> None:
    await conn.execute(update(nodes).values(online=False))


async def list_nodes(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(nodes).order_by(nodes.c.name))).mappings()
    return [dict(r) for r in rows]
