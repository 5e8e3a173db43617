"""Records of commands run on nodes for a client, and the grants of runs' nodes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import commands, experiments, run_grants
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
    """Delete a run's command records and its grants."""
    await conn.execute(delete(commands).where(commands.c.experiment_id == experiment_id))
    await conn.execute(delete(run_grants).where(run_grants.c.run_id == experiment_id))


async def put_grant(conn: AsyncConnection, run_id: str, node: str) -> None:
    await upsert(conn, run_grants, {"run_id": run_id, "node": node}, ["run_id", "node"], False)


async def granted(conn: AsyncConnection, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (run, node) pairs were granted."""
    runs = sorted({run for run, _ in pairs})
    query = select(run_grants.c.run_id, run_grants.c.node).where(run_grants.c.run_id.in_(runs))
    found = {(row.run_id, row.node) for row in await conn.execute(query)}
    return found & set(pairs)


async def open_runs(conn: AsyncConnection) -> dict[str, tuple[int, set[str]]]:
    """Runs still open (their client drives them): run id -> (owner, granted nodes)."""
    query = select(experiments.c.id, experiments.c.owner_id).where(
        experiments.c.kind == "runner", experiments.c.status == "RUNNING"
    )
    runs = {row.id: (row.owner_id, set()) for row in await conn.execute(query)}
    if runs:
        grants = select(run_grants).where(run_grants.c.run_id.in_(list(runs)))
        for row in await conn.execute(grants):
            runs[row.run_id][1].add(row.node)
    return runs
