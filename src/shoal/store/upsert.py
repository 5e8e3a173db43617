"""INSERT ... ON CONFLICT for the two dialects shoal supports."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import CursorResult, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert


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

    The rows are parameters of one statement, not literals in it, and the
    statement is built once per shape: its SQL is compiled once and cached,
    where VALUES built from the rows was compiled again on every call (most of
    the controller's CPU when a thousand nodes enroll at once)."""
    rows = values if isinstance(values, list) else [values]
    if not rows:
        return None
    stmt = _statement(conn.dialect.name, table, tuple(rows[0]), tuple(keys), update)
    return await conn.execute(stmt, rows[0] if len(rows) == 1 else rows)


@lru_cache(maxsize=256)
def _statement(
    dialect: str, table: Table, columns: tuple[str, ...], keys: tuple[str, ...], update: bool
) -> Insert:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    changed = {c: stmt.excluded[c] for c in columns if c not in keys} if update else {}
    if changed:
        return stmt.on_conflict_do_update(index_elements=list(keys), set_=changed)
    return stmt.on_conflict_do_nothing(index_elements=list(keys))
