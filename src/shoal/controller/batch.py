"""Writes collected while handling one frame, stored in one transaction.

A batch also remembers the changes it made to the live state (``set``) and
the messages that depend on it (``send``): memory keeps the changes and the
messages go out only once the store has committed the writes; if it does not,
``rollback`` puts memory back as it was.
"""

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
    # (node, message) to send to agents once the batch is stored
    messages: list[tuple[str, Any]] = field(default_factory=list)
    # (object, attribute, value before) of every change to live state, oldest first
    undo: list[tuple[object, str, Any]] = field(default_factory=list)
    # deployments that ended: their executor tokens are deleted with the change
    revoke: list[str] = field(default_factory=list)
    # experiments whose deployments changed, by id: their status is settled once,
    # when the batch is stored, not once per deployment (a thousand deployments
    # reporting in one batch made that quadratic)
    unsettled: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.experiments or self.deployments or self.steps or self.logs or self.revoke)

    def set(self, target: object, **values: Any) -> None:
        """Change attributes of live state now, undoably: ``batch.set(dep, state="lost")``."""
        for name, value in values.items():
            self.undo.append((target, name, getattr(target, name)))
            setattr(target, name, value)

    def rollback(self) -> None:
        """Undo every ``set`` of this batch (the store did not take its writes)."""
        for target, name, before in reversed(self.undo):
            setattr(target, name, before)
        self.undo.clear()
        self.messages.clear()
        self.forget.clear()
        self.finished_experiments.clear()
        self.unsettled.clear()

    def send(self, node: str, message: Any) -> None:
        """Send ``message`` to the agent on ``node`` once the batch is stored."""
        self.messages.append((node, message))

    def experiment(self, experiment_id: str, **values: Any) -> None:
        self.experiments.setdefault(experiment_id, {}).update(values)

    def deployment(self, deployment_id: str, **values: Any) -> None:
        self.deployments.setdefault(deployment_id, {}).update(values)

    async def flush(self, conn: AsyncConnection) -> None:
        # Steps before the deployment row that may carry the final result, so a
        # reader that sees "finished" also sees every step.
        await exp_queries.put_step_results(conn, self.steps)
        await exp_queries.update_deployments(conn, self.deployments)
        for experiment_id, values in self.experiments.items():
            await exp_queries.update_experiment(conn, experiment_id, **values)
        await exp_queries.add_log_lines(conn, self.logs)
        await user_queries.delete_deployment_tokens(conn, self.revoke)
