"""Users and their tokens."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import tokens, users


async def get_user(conn: AsyncConnection, login: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(users).where(users.c.login == login))).mappings().first()
    return dict(row) if row else None


async def put_user(conn: AsyncConnection, login: str, password_hash: str) -> int:
    """Create the user, or replace the password of an existing one."""
    existing = await get_user(conn, login)
    if existing:
        await conn.execute(
            update(users).where(users.c.id == existing["id"]).values(password_hash=password_hash)
        )
        return int(existing["id"])
    result = await conn.execute(
        insert(users).values(login=login, password_hash=password_hash, created_at=time.time())
    )
    return int(result.inserted_primary_key[0])


async def list_users(conn: AsyncConnection) -> list[str]:
    return [r[0] for r in await conn.execute(select(users.c.login).order_by(users.c.login))]


async def add_token(
    conn: AsyncConnection,
    token_hash: str,
    kind: str,
    user_id: int,
    experiment_id: str | None = None,
    expires_at: float | None = None,
) -> None:
    await conn.execute(
        insert(tokens).values(
            token_hash=token_hash,
            kind=kind,
            user_id=user_id,
            experiment_id=experiment_id,
            created_at=time.time(),
            expires_at=expires_at,
        )
    )


async def get_token(conn: AsyncConnection, token_hash: str) -> dict[str, Any] | None:
    query = (
        select(tokens, users.c.login)
        .join(users, users.c.id == tokens.c.user_id)
        .where(tokens.c.token_hash == token_hash)
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def delete_experiment_tokens(conn: AsyncConnection, experiment_id: str) -> None:
    await conn.execute(delete(tokens).where(tokens.c.experiment_id == experiment_id))
