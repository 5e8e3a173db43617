"""Experiments, their deployments, step results and log lines."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from sqlalchemy import Result, Update, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import deployments, experiments, log_lines, record_items, step_results
from shoal.store.upsert import upsert

TERMINAL_STATUSES = ("FINISHED", "FAILED", "CANCELLED")


async def create_experiment(
    conn: AsyncConnection,
    experiment_id: str,
    owner_id: int,
    name: str,
    kind: str,
    status: str,
    deployment_rows: list[dict[str, Any]],
    reproduction: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(experiments).values(
            id=experiment_id,
            owner_id=owner_id,
            name=name,
            kind=kind,
            status=status,
            created_at=time.time(),
            reproduction=reproduction,
        )
    )
    if deployment_rows:
        await conn.execute(insert(deployments), deployment_rows)


async def find_experiment(conn: AsyncConnection, owner_id: int, name: str) -> dict[str, Any] | None:
    """The experiment's row without its reproduction info: that holds the node
    inventory and can be megabytes, and finding a name is on every request."""
    cols = [c for c in experiments.c if c.name != "reproduction"]
    query = select(*cols).where(experiments.c.owner_id == owner_id, experiments.c.name == name)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def get_experiment(conn: AsyncConnection, experiment_id: str) -> dict[str, Any] | None:
    query = select(experiments).where(experiments.c.id == experiment_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def list_experiments(conn: AsyncConnection, owner_id: int) -> list[dict[str, Any]]:
    query = (
        select(experiments)
        .where(experiments.c.owner_id == owner_id)
        .order_by(experiments.c.created_at)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def list_active_experiments(
    conn: AsyncConnection, kind: str | None = None
) -> list[dict[str, Any]]:
    query = select(experiments).where(experiments.c.status.not_in(TERMINAL_STATUSES))
    if kind is not None:
        query = query.where(experiments.c.kind == kind)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def update_experiment(conn: AsyncConnection, experiment_id: str, **values: Any) -> None:
    await conn.execute(
        update(experiments).where(experiments.c.id == experiment_id).values(**values)
    )


async def delete_experiment(conn: AsyncConnection, experiment_id: str) -> None:
    # Children first: SQLite only cascades when foreign keys are on, and being
    # explicit keeps both dialects identical.
    ids = select(deployments.c.id).where(deployments.c.experiment_id == experiment_id)
    await conn.execute(delete(log_lines).where(log_lines.c.deployment_id.in_(ids)))
    await conn.execute(delete(step_results).where(step_results.c.deployment_id.in_(ids)))
    await conn.execute(delete(deployments).where(deployments.c.experiment_id == experiment_id))
    await conn.execute(delete(record_items).where(record_items.c.experiment_id == experiment_id))
    await conn.execute(delete(experiments).where(experiments.c.id == experiment_id))


async def list_deployments(
    conn: AsyncConnection, experiment_id: str, with_pipeline: bool = False
) -> list[dict[str, Any]]:
    cols = [c for c in deployments.c if with_pipeline or c.name != "pipeline"]
    query = (
        select(*cols)
        .where(deployments.c.experiment_id == experiment_id)
        .order_by(deployments.c.position)
    )
    return _dicts(await conn.execute(query))


async def get_deployment(conn: AsyncConnection, deployment_id: str) -> dict[str, Any] | None:
    query = select(deployments).where(deployments.c.id == deployment_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def existing_deployments(conn: AsyncConnection, deployment_ids: list[str]) -> set[str]:
    """Those of ``deployment_ids`` the store holds."""
    query = select(deployments.c.id).where(deployments.c.id.in_(deployment_ids))
    return set((await conn.execute(query)).scalars())


async def update_deployment(conn: AsyncConnection, deployment_id: str, **values: Any) -> None:
    await conn.execute(
        update(deployments).where(deployments.c.id == deployment_id).values(**values)
    )


async def update_deployments(conn: AsyncConnection, changes: dict[str, dict[str, Any]]) -> None:
    """Update many deployments (id -> new values): one statement per set of
    columns changed, its rows as parameters, instead of one UPDATE each."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for deployment_id, values in changes.items():
        row = {f"new_{k}": v for k, v in values.items()}
        row["deployment_id"] = deployment_id
        shapes.setdefault(tuple(sorted(values)), []).append(row)
    for columns, rows in shapes.items():
        await conn.execute(_deployment_update(columns), rows)


@lru_cache(maxsize=64)
def _deployment_update(columns: tuple[str, ...]) -> Update:
    # Bound names differ from the columns': SQLAlchemy keeps those for itself.
    return (
        update(deployments)
        .where(deployments.c.id == bindparam("deployment_id"))
        .values({c: bindparam(f"new_{c}") for c in columns})
    )


async def put_step_results(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Store step results; a result re-sent after a reconnect is kept once."""
    await upsert(conn, step_results, rows, ["deployment_id", "idx"], update=False)


async def list_step_results(
    conn: AsyncConnection, deployment_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {d: [] for d in deployment_ids}
    if not deployment_ids:
        return out
    query = (
        select(step_results)
        .where(step_results.c.deployment_id.in_(deployment_ids))
        .order_by(step_results.c.deployment_id, step_results.c.idx)
    )
    for row in _dicts(await conn.execute(query)):
        out[row["deployment_id"]].append(row)
    return out


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """The rows as dicts, keyed by column name. A thousand nodes' deployments and
    their steps are read at once; SQLAlchemy's row mappings cost several times this."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


async def add_log_lines(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(log_lines), rows)


async def list_log_lines(
    conn: AsyncConnection, deployment_ids: list[str], after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    if not deployment_ids:
        return []
    query = (
        select(log_lines)
        .where(log_lines.c.deployment_id.in_(deployment_ids), log_lines.c.id > after)
        .order_by(log_lines.c.id)
        .limit(limit)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]
