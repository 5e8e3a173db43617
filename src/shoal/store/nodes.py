"""Nodes as last reported by their agents."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import node_credentials, nodes
from shoal.store.upsert import upsert


def node_row(name: str, architecture: str, cpus: int, properties: dict[str, Any]) -> dict[str, Any]:
    """The row of a node that connected now."""
    return {
        "name": name,
        "architecture": architecture,
        "cpus": cpus,
        "properties": properties,
        "online": True,
        "last_seen": time.time(),
        "metrics": {},
    }


async def put_nodes(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Store many nodes (rows of :func:`node_row`) with one statement."""
    await upsert(conn, nodes, rows, ["name"])


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


async def credential_owners(conn: AsyncConnection, hashes: list[str]) -> dict[str, str]:
    """The nodes these credentials (by their hashes) were issued to: hash -> name."""
    if not hashes:
        return {}
    query = select(node_credentials.c.credential_hash, node_credentials.c.name).where(
        node_credentials.c.credential_hash.in_(hashes)
    )
    return {row[0]: row[1] for row in await conn.execute(query)}


async def is_enrolled(conn: AsyncConnection, name: str) -> bool:
    query = select(node_credentials.c.name).where(node_credentials.c.name == name)
    return (await conn.execute(query)).first() is not None


async def enroll_many(conn: AsyncConnection, hashes: dict[str, str]) -> set[str]:
    """Bind each name to its credential hash (name -> hash) in this transaction;
    the names that were bound to another credential already (left as they were)."""
    if not hashes:
        return set()
    now = time.time()
    rows = [
        {"name": name, "credential_hash": digest, "created_at": now}
        for name, digest in hashes.items()
    ]
    await upsert(conn, node_credentials, rows, ["name"], update=False)
    # Read back rather than trusting a count: an executemany's rowcount is not
    # reliable on every driver, and the hash stored is what decides.
    query = select(node_credentials.c.name, node_credentials.c.credential_hash).where(
        node_credentials.c.name.in_(list(hashes))
    )
    return {name for name, digest in await conn.execute(query) if hashes[name] != digest}


async def forget_credentials(conn: AsyncConnection, names: list[str]) -> None:
    if names:
        await conn.execute(delete(node_credentials).where(node_credentials.c.name.in_(names)))


async def forget_credential(conn: AsyncConnection, name: str) -> bool:
    """Free ``name``; False if it was not enrolled."""
    result = await conn.execute(delete(node_credentials).where(node_credentials.c.name == name))
    return result.rowcount > 0
