"""Users and their tokens.

Whoever revokes tokens here from outside the controller process (the ``shoal
user`` commands write to the database directly) also changes the
``token_revocations`` setting: the controller watches it and drops its token
cache when it changes, so a revocation takes effect within a second.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.settings import get_setting, set_setting
from shoal.store.tables import deployments, experiments, tokens, users

REVOCATIONS = "token_revocations"
ENDED_DEPLOYMENT = ("finished", "failed", "cancelled", "lost")


async def get_user(conn: AsyncConnection, login: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(users).where(users.c.login == login))).mappings().first()
    return dict(row) if row else None


async def put_user(conn: AsyncConnection, login: str, password_hash: str) -> int:
    """Create the user, or replace the password of an existing one.

    A new password revokes the user's bearer tokens (not the executor tokens of
    running experiments: those end with their deployments).
    """
    existing = await get_user(conn, login)
    if existing:
        await conn.execute(
            update(users).where(users.c.id == existing["id"]).values(password_hash=password_hash)
        )
        await conn.execute(
            delete(tokens).where(tokens.c.user_id == existing["id"], tokens.c.kind == "user")
        )
        await mark_revocation(conn)
        return int(existing["id"])
    result = await conn.execute(
        insert(users).values(login=login, password_hash=password_hash, created_at=time.time())
    )
    return int(result.inserted_primary_key[0])


async def delete_user(conn: AsyncConnection, login: str) -> bool:
    """Remove the user; their tokens, experiments and results go with them (ON DELETE
    CASCADE). False if there is no such user."""
    existing = await get_user(conn, login)
    if existing is None:
        return False
    await conn.execute(delete(users).where(users.c.id == existing["id"]))
    await mark_revocation(conn)
    return True


async def unfinished_experiments(conn: AsyncConnection, login: str) -> list[str]:
    """Names of the user's experiments that are not over yet."""
    query = (
        select(experiments.c.name)
        .join(users, users.c.id == experiments.c.owner_id)
        .where(
            users.c.login == login,
            experiments.c.status.in_(("PREPARING", "READY", "RUNNING")),
        )
        .order_by(experiments.c.name)
    )
    return [r[0] for r in await conn.execute(query)]


async def count_experiments(conn: AsyncConnection, user_id: int) -> int:
    query = select(func.count()).select_from(experiments).where(experiments.c.owner_id == user_id)
    return int((await conn.execute(query)).scalar_one())


async def list_users(conn: AsyncConnection) -> list[str]:
    return [r[0] for r in await conn.execute(select(users.c.login).order_by(users.c.login))]


async def describe_users(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every user with when it was created and how many live tokens it holds."""
    now = time.time()
    live = or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now)
    rows = await conn.execute(
        select(users.c.id, users.c.login, users.c.created_at).order_by(users.c.login)
    )
    found = [dict(r._mapping) for r in rows]
    counts: dict[tuple[int, str], int] = {}
    for user_id, kind in await conn.execute(select(tokens.c.user_id, tokens.c.kind).where(live)):
        counts[(user_id, kind)] = counts.get((user_id, kind), 0) + 1
    for row in found:
        row["user_tokens"] = counts.get((row["id"], "user"), 0)
        row["executor_tokens"] = counts.get((row["id"], "executor"), 0)
    return found


async def add_token(
    conn: AsyncConnection,
    token_hash: str,
    kind: str,
    user_id: int,
    experiment_id: str | None = None,
    expires_at: float | None = None,
    deployment_id: str | None = None,
) -> None:
    await conn.execute(
        insert(tokens).values(
            token_hash=token_hash,
            kind=kind,
            user_id=user_id,
            experiment_id=experiment_id,
            deployment_id=deployment_id,
            created_at=time.time(),
            expires_at=expires_at,
        )
    )


async def add_executor_tokens(
    conn: AsyncConnection, user_id: int, experiment_id: str, tokens_by_deployment: dict[str, str]
) -> None:
    """Store one executor token (deployment id -> token hash) per deployment, in
    one statement."""
    now = time.time()
    rows = [
        {
            "token_hash": token_hash,
            "kind": "executor",
            "user_id": user_id,
            "experiment_id": experiment_id,
            "deployment_id": deployment_id,
            "created_at": now,
            "expires_at": None,
        }
        for deployment_id, token_hash in tokens_by_deployment.items()
    ]
    if rows:
        await conn.execute(insert(tokens), rows)


async def get_token(conn: AsyncConnection, token_hash: str) -> dict[str, Any] | None:
    query = (
        select(tokens, users.c.login, experiments.c.name.label("experiment_name"))
        .join(users, users.c.id == tokens.c.user_id)
        .outerjoin(experiments, experiments.c.id == tokens.c.experiment_id)
        .where(tokens.c.token_hash == token_hash)
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def existing_tokens(conn: AsyncConnection, token_hashes: list[str]) -> set[str]:
    """Which of ``token_hashes`` are still stored."""
    if not token_hashes:
        return set()
    query = select(tokens.c.token_hash).where(tokens.c.token_hash.in_(token_hashes))
    return {r[0] for r in await conn.execute(query)}


async def delete_token(conn: AsyncConnection, token_hash: str) -> None:
    await conn.execute(delete(tokens).where(tokens.c.token_hash == token_hash))


async def delete_deployment_tokens(conn: AsyncConnection, deployment_ids: list[str]) -> None:
    if deployment_ids:
        await conn.execute(delete(tokens).where(tokens.c.deployment_id.in_(deployment_ids)))


async def delete_experiment_tokens(conn: AsyncConnection, experiment_id: str) -> None:
    await conn.execute(delete(tokens).where(tokens.c.experiment_id == experiment_id))


async def delete_dead_tokens(conn: AsyncConnection) -> None:
    """Expired tokens, and executor tokens whose deployment has ended or is gone."""
    await conn.execute(delete(tokens).where(tokens.c.expires_at < time.time()))
    running = select(deployments.c.id).where(deployments.c.state.not_in(ENDED_DEPLOYMENT))
    await conn.execute(
        delete(tokens).where(
            and_(
                tokens.c.kind == "executor",
                or_(tokens.c.deployment_id.is_(None), tokens.c.deployment_id.not_in(running)),
            )
        )
    )


async def mark_revocation(conn: AsyncConnection) -> None:
    """Tell a running controller that tokens were revoked behind its back.

    A fresh random value, not a counter: two concurrent writers could both
    write the same next count, and the second revocation would go unnoticed.
    """
    await set_setting(conn, REVOCATIONS, secrets.token_hex(8))


async def revocation_mark(conn: AsyncConnection) -> str | None:
    return await get_setting(conn, REVOCATIONS)
