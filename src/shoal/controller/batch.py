"""Writes collected while handling one frame, stored in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.store import experiments as exp_queries
from shoal.store import users as user_queries


@dataclass
class WriteBatch:
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    # (node, deployment id) pairs whose final state the agent may drop once stored
    forget: list[tuple[str, str]] = field(default_factory=list)
    finished_experiments: list[str] = field(default_factory=list)
    # deployments that ended: their executor tokens are deleted with the change
    revoke: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.experiments or self.deployments or self.steps or self.logs or self.revoke)

    def experiment(self, experiment_id: str, **values: Any) -> None:
        self.experiments.setdefault(experiment_id, {}).update(values)

    def deployment(self, deployment_id: str, **values: Any) -> None:
        self.deployments.setdefault(deployment_id, {}).update(values)

    async def flush(self, conn: AsyncConnection) -> None:
        # Steps before the deployment row that may carry the final result, so a
        # reader that sees "finished" also sees every step.
        await exp_queries.put_step_results(conn, self.steps)
        for deployment_id, values in self.deployments.items():
            await exp_queries.update_deployment(conn, deployment_id, **values)
        for experiment_id, values in self.experiments.items():
            await exp_queries.update_experiment(conn, experiment_id, **values)
        await exp_queries.add_log_lines(conn, self.logs)
        await user_queries.delete_deployment_tokens(conn, self.revoke)
