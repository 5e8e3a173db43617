"""One record of all work: what every front-end's experiments add to the store.

Pipelines and runs keep their units of work in their own tables (steps,
commands); graph sessions and dataflow networks keep theirs (tasks, objects,
jobs) in ``record_items``. This service creates the records of graph sessions
and of client-driven networks, settles the ones a controller restart
interrupted, and gives every record its truthful state and counts.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.controller.errors import conflict, not_found
from shoal.controller.experiments import TERMINAL_EXPERIMENT, ExperimentService, check_name
from shoal.controller.graph_records import UNFINISHED
from shoal.controller.registry import NodeRegistry
from shoal.store import experiments as exp_queries
from shoal.store import records as record_queries
from shoal.store.database import Database
from shoal.store.tables import experiments as experiments_table

log = logging.getLogger("shoal.controller.records")

#: Kinds whose client reports items and status through ``/api/records``.
CLIENT_DRIVEN = frozenset({"dataflow"})
INTERRUPTED = "interrupted: the controller restarted while the session was open"


class RecordService:
    """Creates and settles the records of graph sessions and client-driven runs."""

    def __init__(
        self, db: Database, registry: NodeRegistry, experiments: ExperimentService
    ) -> None:
        self.db = db
        self.registry = registry
        self.experiments = experiments

    def inventory(self) -> list[dict[str, Any]]:
        """Every node the controller knows, with its properties and state, now."""
        keep = ("name", "architecture", "cpus", "properties", "state", "address")
        return [
            {key: value for key, value in node.to_dict().items() if key in keep}
            for _, node in sorted(self.registry.nodes.items())
        ]

    def complete(self, reproduction: dict[str, Any] | None) -> dict[str, Any]:
        """The client's reproduction record plus the node inventory at start."""
        return {**(reproduction or {}), "nodes": self.inventory(), "recorded_at": time.time()}

    async def set_reproduction(
        self, experiment_id: str, reproduction: dict[str, Any] | None
    ) -> None:
        """Keep a run's reproduction info (the client's, with the inventory now)."""
        async with self.db.write() as conn:
            await exp_queries.update_experiment(
                conn, experiment_id, reproduction=self.complete(reproduction)
            )

    async def load(self) -> None:
        """Graph sessions left open by an earlier controller were interrupted: cancelled."""
        now = time.time()
        async with self.db.write() as conn:
            for row in await exp_queries.list_active_experiments(conn, kind="graph"):
                await record_queries.cancel_unfinished(conn, row["id"], UNFINISHED, now)
                await exp_queries.update_experiment(
                    conn, row["id"], status="CANCELLED", error=INTERRUPTED, finished_at=now
                )

    async def create(
        self, owner_id: int, name: str, kind: str, reproduction: dict[str, Any] | None
    ) -> tuple[str, str]:
        """A new RUNNING record; its id and name (``name``, or ``name-N`` if taken)."""
        check_name(name)
        for attempt in range(3):
            record_id = secrets.token_hex(16)
            async with self.db.read() as conn:
                unique = await self._free_name(conn, owner_id, name)
            if attempt:
                unique = f"{name}-{secrets.token_hex(3)}"
            try:
                async with self.db.write() as conn:
                    await exp_queries.create_experiment(
                        conn,
                        record_id,
                        owner_id,
                        unique,
                        kind,
                        "RUNNING",
                        [],
                        reproduction=self.complete(reproduction),
                    )
                    await exp_queries.update_experiment(conn, record_id, started_at=time.time())
            except IntegrityError:
                continue  # another record took the name meanwhile
            await self.experiments.notify([record_id])
            return record_id, unique
        raise conflict(f"could not find a free name for a record named {name!r}")

    @staticmethod
    async def _free_name(conn: AsyncConnection, owner_id: int, base: str) -> str:
        table = experiments_table
        query = select(table.c.name).where(
            table.c.owner_id == owner_id,
            (table.c.name == base) | table.c.name.startswith(f"{base}-", autoescape=True),
        )
        taken = set((await conn.execute(query)).scalars())
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def update(
        self,
        owner_id: int,
        name: str,
        items: list[dict[str, Any]],
        summary: dict[str, Any] | None,
        status: str | None,
        error: str | None,
    ) -> str:
        """Store a client-driven record's changed items and summary, and its final
        status; the status it has now (a cancelled record stays CANCELLED)."""
        async with self.db.read() as conn:
            row = await exp_queries.find_experiment(conn, owner_id, name)
        if row is None:
            raise not_found(f"experiment {name!r} not found")
        if row["kind"] not in CLIENT_DRIVEN:
            raise conflict(f"{name!r} is a {row['kind']} experiment, kept by the controller")
        rows = [
            {
                "experiment_id": row["id"],
                "item": f"{item['kind']}:{item['id']}",
                "kind": item["kind"],
                "seq": item["id"],
                "name": item["name"],
                "type": item["type"],
                "node": item.get("node"),
                "state": item["state"],
                "started_at": item.get("started_at"),
                "finished_at": item.get("finished_at"),
                "error": item.get("error"),
                "info": item.get("info") or {},
            }
            for item in items
        ]
        values: dict[str, Any] = {}
        if summary is not None:
            values["summary"] = summary
        final = row["status"]
        if status is not None and row["status"] not in TERMINAL_EXPERIMENT:
            values.update(status=status, error=error, finished_at=time.time())
            final = status
        async with self.db.write() as conn:
            await record_queries.put_items(conn, rows)
            if values:
                await exp_queries.update_experiment(conn, row["id"], **values)
        await self.experiments.notify([row["id"]])
        return final

    async def cancel(self, row: dict[str, Any], reason: str = "cancelled by its user") -> None:
        """Mark a running client-driven or graph record CANCELLED (the live work is
        stopped by its own service or client)."""
        if row["status"] in TERMINAL_EXPERIMENT:
            return
        now = time.time()
        async with self.db.write() as conn:
            await record_queries.cancel_unfinished(conn, row["id"], UNFINISHED, now)
            await exp_queries.update_experiment(
                conn, row["id"], status="CANCELLED", error=reason, finished_at=now
            )
        await self.experiments.notify([row["id"]])
