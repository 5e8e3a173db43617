"""Nodes as last reported by their agents."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import node_credentials, nodes
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


async def set_offline(conn: AsyncConnection, names: list[str]) -> None:
    if names:
        await conn.execute(update(nodes).where(nodes.c.name.in_(names)).values(online=False))


async def mark_all_offline(conn: AsyncConnection) -> None:
    await conn.execute(update(nodes).values(online=False))


async def list_nodes(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(nodes).order_by(nodes.c.name))).mappings()
    return [dict(r) for r in rows]


async def credential_owner(conn: AsyncConnection, credential_hash: str) -> str | None:
    """The name of the node this credential (by its hash) was issued to."""
    query = select(node_credentials.c.name).where(
        node_credentials.c.credential_hash == credential_hash
    )
    return (await conn.execute(query)).scalar_one_or_none()


async def is_enrolled(conn: AsyncConnection, name: str) -> bool:
    query = select(node_credentials.c.name).where(node_credentials.c.name == name)
    return (await conn.execute(query)).first() is not None


async def enroll(conn: AsyncConnection, name: str, credential_hash: str) -> bool:
    """Bind ``name`` to a credential; False if the name is bound already."""
    row = {"name": name, "credential_hash": credential_hash, "created_at": time.time()}
    result = await upsert(conn, node_credentials, row, ["name"], update=False)
    return result is not None and result.rowcount == 1


async def forget_credential(conn: AsyncConnection, name: str) -> bool:
    """Free ``name``; False if it was not enrolled."""
    result = await conn.execute(delete(node_credentials).where(node_credentials.c.name == name))
    return result.rowcount > 0
