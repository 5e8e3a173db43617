"""What the netUnicorn front-end stores beside shoal's own experiment rows.

A netUnicorn experiment is an ordinary shoal experiment (kind ``netunicorn``)
whose deployments each run one netUnicorn executor. These tables keep what
netUnicorn's client and executor exchange and shoal has no column for: the
client's description of each deployment, the serialised execution graph, and
the results the executor reports. Graphs and results are opaque bytes: the
controller stores and hands them on, it never unpickles them.

Rows hang off shoal's experiments and deployments with ``ON DELETE CASCADE``,
so deleting an experiment (by any front-end) removes them too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import metadata

netunicorn_experiments = Table(
    "netunicorn_experiments",
    metadata,
    Column(
        "experiment_id",
        String(36),
        ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("deployment_context", JSON, nullable=True),
)

netunicorn_deployments = Table(
    "netunicorn_deployments",
    metadata,
    Column(
        "deployment_id",
        String(36),
        ForeignKey("deployments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "experiment_id",
        String(36),
        ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    # The client's JSON for the deployment, less the graph and the fields the
    # controller fills in (prepared, executor_id, error).
    Column("spec", JSON, nullable=False),
    Column("execution_graph", LargeBinary, nullable=False),
    Column("keep_alive", Float, nullable=False),  # seconds of silence before it fails
    Column("result", LargeBinary, nullable=True),  # latest report: cloudpickle([result, log])
    Column("final", Boolean, nullable=False, default=False),  # the report is the last one
    Column("error", Text, nullable=True),
    Column("reported_at", Float, nullable=True),
    Index("ix_netunicorn_deployments_experiment", "experiment_id", "position"),
)


async def create(
    conn: AsyncConnection,
    experiment_id: str,
    deployment_context: dict[str, Any] | None,
    rows: list[dict[str, Any]],
) -> None:
    """Store a new experiment's netUnicorn side (in the transaction that creates it)."""
    await conn.execute(
        insert(netunicorn_experiments).values(
            experiment_id=experiment_id, deployment_context=deployment_context
        )
    )
    if rows:
        await conn.execute(insert(netunicorn_deployments), rows)


async def get_experiment(conn: AsyncConnection, experiment_id: str) -> dict[str, Any] | None:
    query = select(netunicorn_experiments).where(
        netunicorn_experiments.c.experiment_id == experiment_id
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def list_deployments(conn: AsyncConnection, experiment_id: str) -> list[dict[str, Any]]:
    query = (
        select(netunicorn_deployments)
        .where(netunicorn_deployments.c.experiment_id == experiment_id)
        .order_by(netunicorn_deployments.c.position)
    )
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def get_deployment(conn: AsyncConnection, deployment_id: str) -> dict[str, Any] | None:
    query = select(netunicorn_deployments).where(
        netunicorn_deployments.c.deployment_id == deployment_id
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def keep_alive_of(
    conn: AsyncConnection, deployment_ids: list[str]
) -> dict[str, tuple[float, bool]]:
    """(keep-alive seconds, final report received) of the given deployments that are ours."""
    if not deployment_ids:
        return {}
    c = netunicorn_deployments.c
    query = select(c.deployment_id, c.keep_alive, c.final).where(
        c.deployment_id.in_(deployment_ids)
    )
    return {r.deployment_id: (r.keep_alive, bool(r.final)) for r in await conn.execute(query)}


async def put_result(
    conn: AsyncConnection, deployment_id: str, result: bytes, final: bool, now: float
) -> bool:
    """Keep the newest report; a heartbeat never replaces a final one. True if stored."""
    c = netunicorn_deployments.c
    query = (
        update(netunicorn_deployments)
        .where(c.deployment_id == deployment_id, c.final.is_(False))
        .values(result=result, final=final, reported_at=now)
    )
    return (await conn.execute(query)).rowcount > 0


async def set_error(conn: AsyncConnection, deployment_id: str, error: str) -> None:
    await conn.execute(
        update(netunicorn_deployments)
        .where(netunicorn_deployments.c.deployment_id == deployment_id)
        .values(error=error)
    )
