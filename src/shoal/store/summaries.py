"""Short views of experiments for the dashboard: one row each, and log tails."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store.tables import commands, deployments, experiments, log_lines, step_results, users


async def experiment_summaries(conn: AsyncConnection, owner_id: int) -> list[dict[str, Any]]:
    """The owner's experiments, oldest first, with counts of what they hold.

    Each row: the experiment's columns, ``owner`` (login), ``deployments``
    (count by state), ``failed_steps``, ``commands`` and ``failed_commands``.
    Four queries whatever the number of experiments, none reading payloads.
    """
    query = (
        select(experiments, users.c.login.label("owner"))
        .join(users, users.c.id == experiments.c.owner_id)
        .where(experiments.c.owner_id == owner_id)
        .order_by(experiments.c.created_at)
    )
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    mine = select(experiments.c.id).where(experiments.c.owner_id == owner_id)
    states: defaultdict[str, dict[str, int]] = defaultdict(dict)
    by_state = (
        select(deployments.c.experiment_id, deployments.c.state, func.count())
        .where(deployments.c.experiment_id.in_(mine))
        .group_by(deployments.c.experiment_id, deployments.c.state)
    )
    for experiment_id, state, count in await conn.execute(by_state):
        states[experiment_id][state] = count
    failed_steps = (
        select(deployments.c.experiment_id, func.count())
        .join(step_results, step_results.c.deployment_id == deployments.c.id)
        .where(deployments.c.experiment_id.in_(mine), step_results.c.ok.is_(False))
        .group_by(deployments.c.experiment_id)
    )
    failed = dict((await conn.execute(failed_steps)).tuples().all())
    failing = or_(commands.c.error.is_not(None), commands.c.return_code != 0)
    by_command = (
        select(
            commands.c.experiment_id,
            func.count(),
            func.count().filter(failing),
        )
        .where(commands.c.experiment_id.in_(mine))
        .group_by(commands.c.experiment_id)
    )
    ran = {e: (total, bad) for e, total, bad in await conn.execute(by_command)}
    for row in rows:
        row.pop("owner_id", None)
        row["deployments"] = states.get(row["id"], {})
        row["failed_steps"] = failed.get(row["id"], 0)
        row["commands"], row["failed_commands"] = ran.get(row["id"], (0, 0))
    return rows


async def log_tail(
    conn: AsyncConnection, deployment_ids: list[str], limit: int, after: int = 0
) -> list[dict[str, Any]]:
    """The last ``limit`` log lines of these deployments with an id above ``after``,
    oldest first."""
    if not deployment_ids:
        return []
    query = (
        select(log_lines)
        .where(log_lines.c.deployment_id.in_(deployment_ids), log_lines.c.id > after)
        .order_by(log_lines.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in reversed((await conn.execute(query)).mappings().all())]
