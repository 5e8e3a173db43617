"""INSERT ... ON CONFLICT for the two dialects shoal supports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: dict[str, Any] | list[dict[str, Any]],
    keys: list[str],
    update: bool = True,
) -> CursorResult[Any] | None:
    """Insert rows; on a clash of ``keys`` update the other columns (or skip).

    The result's ``rowcount`` tells how many rows were written (None: no rows
    given; reliable for one row).

    The rows are parameters of one statement, not literals in it: its SQL is
    compiled once and cached, where VALUES built from the rows was compiled
    again on every call (most of the controller's CPU when a thousand nodes
    enroll at once)."""
    rows = values if isinstance(values, list) else [values]
    if not rows:
        return None
    dialect = conn.dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    if update:
        changed = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
        if changed:
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_=changed)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    return await conn.execute(stmt, rows[0] if len(rows) == 1 else rows)
