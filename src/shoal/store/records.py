"""The units of work of graph sessions and dataflow networks (``record_items``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import commands, deployments, record_items, step_results

ITEM_KEYS = ["experiment_id", "item"]


def _upsert_statement(dialect: str) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(record_items)
    changed = {c.name: stmt.excluded[c.name] for c in record_items.c if c.name not in ITEM_KEYS}
    return stmt.on_conflict_do_update(index_elements=ITEM_KEYS, set_=changed)


_UPSERTS = {name: _upsert_statement(name) for name in ("sqlite", "postgresql")}


async def put_items(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert or update items (each row has every column).

    One statement executed for many rows (not one statement of many VALUES):
    a graph's records come by the thousand, and this is about ten times faster.
    """
    if rows:
        await conn.execute(_UPSERTS[conn.dialect.name], rows)


ITEM_COLUMNS = tuple(c.name for c in record_items.c)
_DRIVER_UPSERTS: dict[str, str] = {}


async def put_item_tuples(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    """:func:`put_items` for rows given as tuples in ``ITEM_COLUMNS`` order, with
    ``info`` already JSON text. Executed by the driver itself: SQLAlchemy's
    processing of each row's parameters cost three times the insert."""
    if not rows:
        return
    dialect = conn.dialect.name
    sql = _DRIVER_UPSERTS.get(dialect)
    if sql is None:
        compiled = _UPSERTS[dialect].compile(dialect=conn.dialect)
        if tuple(compiled.positiontup or ()) != ITEM_COLUMNS:
            raise RuntimeError(f"record_items upsert binds {compiled.positiontup}")
        sql = _DRIVER_UPSERTS[dialect] = str(compiled)
    await conn.exec_driver_sql(sql, rows)


async def list_items(
    conn: AsyncConnection,
    experiment_id: str,
    kind: str | None = None,
    *,
    states: tuple[str, ...] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The record's items by kind and id; only those in ``states``, at most ``limit``."""
    query = select(record_items).where(record_items.c.experiment_id == experiment_id)
    if kind is not None:
        query = query.where(record_items.c.kind == kind)
    if states is not None:
        query = query.where(record_items.c.state.in_(states))
    query = query.order_by(record_items.c.kind, record_items.c.seq).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def cancel_unfinished(
    conn: AsyncConnection, experiment_id: str, states: tuple[str, ...], finished_at: float
) -> None:
    """Items still in one of ``states`` (unfinished) end as cancelled."""
    await conn.execute(
        update(record_items)
        .where(record_items.c.experiment_id == experiment_id, record_items.c.state.in_(states))
        .values(state="cancelled", finished_at=finished_at)
    )


async def item_counts(
    conn: AsyncConnection, experiment_ids: list[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """experiment id -> unit kind -> state -> count, for every kind of record.

    Steps count as ``finished``/``failed`` by their ``ok`` (and a lost deployment
    as one ``lost`` step); commands as
    ``failed`` when they ended with an error or a non-zero return code.
    """
    out: dict[str, dict[str, dict[str, int]]] = {e: {} for e in experiment_ids}
    if not experiment_ids:
        return out

    def add(experiment_id: str, kind: str, state: str, count: int) -> None:
        per_kind = out[experiment_id].setdefault(kind, {})
        per_kind[state] = per_kind.get(state, 0) + count

    items = (
        select(
            record_items.c.experiment_id, record_items.c.kind, record_items.c.state, func.count()
        )
        .where(record_items.c.experiment_id.in_(experiment_ids))
        .group_by(record_items.c.experiment_id, record_items.c.kind, record_items.c.state)
    )
    for experiment_id, kind, state, count in await conn.execute(items):
        add(experiment_id, kind, state, count)
    steps = (
        select(deployments.c.experiment_id, step_results.c.ok, func.count())
        .join(deployments, deployments.c.id == step_results.c.deployment_id)
        .where(deployments.c.experiment_id.in_(experiment_ids))
        .group_by(deployments.c.experiment_id, step_results.c.ok)
    )
    for experiment_id, ok, count in await conn.execute(steps):
        add(experiment_id, "step", "finished" if ok else "failed", count)
    # A lost node's step never reported: it counts as one lost step of its deployment.
    lost = (
        select(deployments.c.experiment_id, func.count())
        .where(deployments.c.experiment_id.in_(experiment_ids), deployments.c.state == "lost")
        .group_by(deployments.c.experiment_id)
    )
    for experiment_id, count in await conn.execute(lost):
        add(experiment_id, "step", "lost", count)
    failed = (commands.c.error.is_not(None)) | (
        commands.c.return_code.is_not(None) & (commands.c.return_code != 0)
    )
    cmds = (
        select(commands.c.experiment_id, failed.label("failed"), func.count())
        .where(commands.c.experiment_id.in_(experiment_ids))
        .group_by(commands.c.experiment_id, "failed")
    )
    for experiment_id, bad, count in await conn.execute(cmds):
        add(experiment_id, "command", "failed" if bad else "finished", count)
    return out
