"""What users read of experiments: one experiment's JSON, their list, and a wait
for a status (the read side of ``ExperimentService``)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from shoal.controller.auth import Principal
from shoal.controller.errors import not_found
from shoal.controller.experiment_state import LiveExperiment
from shoal.controller.record_views import describe_records
from shoal.controller.registry import NodeRegistry
from shoal.store import commands as command_queries
from shoal.store import experiments as exp_queries
from shoal.store.database import Database


class ExperimentViews:
    """Reads for users; a part of :class:`ExperimentService` (the store is always at
    least as new as the last acknowledged change, so reads come from it)."""

    db: Database
    registry: NodeRegistry
    live: dict[str, LiveExperiment]
    changed: asyncio.Condition
    find: Callable[[Principal, str], Awaitable[dict[str, Any]]]  # the service's

    async def describe(self, experiment_id: str, with_items: bool = True) -> dict[str, Any]:
        """The JSON a user gets for one experiment (``with_items``: with the tasks,
        objects and jobs of graph and dataflow records, and its reproduction info)."""
        async with self.db.read() as conn:
            row = await exp_queries.get_experiment(conn, experiment_id)
            if row is None:
                raise not_found("experiment was deleted")
            deps = await exp_queries.list_deployments(conn, experiment_id)
            steps = await exp_queries.list_step_results(conn, [d["id"] for d in deps])
            commands = await command_queries.list_commands(conn, experiment_id)
            record = (await describe_records(conn, [row], with_items))[experiment_id]
        return {
            "id": row["id"],
            "name": row["name"],
            "kind": row["kind"],
            "status": row["status"],
            "error": row["error"],
            "created_at": row["created_at"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "deployments": [self._describe_deployment(d, steps[d["id"]]) for d in deps],
            "commands": [
                {
                    k: c[k]
                    for k in (
                        "id",
                        "node",
                        "cmd",
                        "pid",
                        "started_at",
                        "finished_at",
                        "return_code",
                        "error",
                        "stdout",
                        "stderr",
                        "truncated",
                    )
                }
                for c in commands
            ],
            **record,
        }

    def _describe_deployment(self, d: dict[str, Any], steps: list[dict[str, Any]]) -> dict:
        node = self.registry.nodes.get(d["node"])
        return {
            "executor_id": d["id"],
            "node": node.to_dict() if node else {"name": d["node"]},
            "state": d["state"],
            "prepared": bool(d["prepared"]),
            "error": d["error"],
            "result": base64.b64encode(d["result"]).decode() if d["result"] else None,
            "result_text": d["result_text"],
            "started_at": d["started_at"],
            "finished_at": d["finished_at"],
            "steps": [
                {
                    "index": s["idx"],
                    "task_name": s["task_name"],
                    "ok": bool(s["ok"]),
                    "text": s["text"],
                    "payload": base64.b64encode(s["payload"]).decode(),
                }
                for s in steps
            ],
        }

    async def list(self, principal: Principal) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await exp_queries.list_experiments(conn, principal.user_id)
        return [await self.describe(r["id"], with_items=False) for r in rows]

    async def wait(
        self, principal: Principal, name: str, timeout: float, statuses: frozenset[str]
    ) -> dict[str, Any]:
        """Hold until the experiment reaches one of ``statuses`` or ``timeout`` passes."""
        row = await self.find(principal, name)
        experiment_id = row["id"]

        def reached() -> bool:
            live = self.live.get(experiment_id)
            return live is None or live.status in statuses

        try:
            async with asyncio.timeout(timeout), self.changed:
                await self.changed.wait_for(reached)
        except TimeoutError:
            pass
        return await self.describe(experiment_id)
