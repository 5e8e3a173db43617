"""What agents report about their deployments, taken into the live state (the
agent side of ``ExperimentService``): each report fills a ``WriteBatch``, which
the service stores before anything follows from it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from shoal.controller.auth import Authenticator
from shoal.controller.batch import WriteBatch
from shoal.controller.experiment_state import TERMINAL_DEPLOYMENT, LiveDeployment, LiveExperiment
from shoal.controller.flags import FlagService
from shoal.protocol import (
    Cancel,
    DeploymentReport,
    DeploymentState,
    Forget,
    LogLine,
    Prepare,
    StepResult,
)
from shoal.store import experiments as exp_queries
from shoal.store.database import Database

log = logging.getLogger("shoal.controller.experiments")


class AgentReports:
    """Agents' reports; a part of :class:`ExperimentService`."""

    auth: Authenticator
    db: Database
    flags: FlagService
    _lock: asyncio.Lock
    # the service's own, used here too
    _send: Callable[[str, Any], None]
    _prepare_message: Callable[..., Prepare]
    lost_timeout: float
    live: dict[str, LiveExperiment]
    deployments: dict[str, LiveDeployment]

    def on_agent_hello(
        self, node: str, reports: list[DeploymentReport], batch: WriteBatch
    ) -> tuple[list[str], list[LiveDeployment]]:
        """Reconcile what a (re)connected agent holds with what we expect of it.

        Returns the deployments the agent may drop and the deployments whose
        Prepare must be sent again; the writes go into ``batch``.
        """
        forget: list[str] = []
        reported = set()
        for report in reports:
            dep = self.deployments.get(report.id)
            if dep is not None and not self._from_placed(node, dep, "a deployment report"):
                continue
            if dep is None or dep.state in TERMINAL_DEPLOYMENT:
                forget.append(report.id)
                continue
            reported.add(report.id)
            for step in report.steps:
                if step.deployment == report.id:  # a report speaks for its own deployment only
                    self._add_step(step, batch)
            self._apply_state(
                dep, report.state, report.error, report.result, report.result_text, batch
            )
        resend = []
        for dep in list(self.deployments.values()):
            if dep.node != node or dep.id in reported or dep.state in TERMINAL_DEPLOYMENT:
                continue
            if dep.state == "preparing":
                resend.append(dep)
            else:
                self._finish_deployment(
                    dep, "lost", f"the agent on {node!r} restarted and no longer runs it", batch
                )
        return forget, resend

    async def resend_prepare(self, deps: list[LiveDeployment]) -> None:
        for dep in deps:
            live = self.live.get(dep.experiment_id)
            if live is None:
                continue
            async with self.db.read() as conn:
                row = await exp_queries.get_deployment(conn, dep.id)
            if row is None:
                continue
            # The earlier token of this deployment is revoked: one live token each.
            token = await self.auth.issue_executor_token(live.owner_id, live.id, dep.id)
            self._send(
                dep.node,
                self._prepare_message(
                    live,
                    dep.id,
                    row["pipeline"],
                    row["requirements"],
                    token,
                    row.get("environment"),
                ),
            )

    def on_agent_message(
        self, node: str, message: StepResult | DeploymentState | LogLine, batch: WriteBatch
    ) -> None:
        """Take what ``node`` reports about a deployment, if the deployment is its."""
        placed = self.deployments.get(message.deployment)
        if placed is not None and not self._from_placed(node, placed, type(message).__name__):
            return
        if isinstance(message, StepResult):
            if placed is not None:
                self._add_step(message, batch)
        elif isinstance(message, LogLine):
            if placed is not None:
                batch.logs.append(
                    {
                        "deployment_id": message.deployment,
                        "ts": message.ts,
                        "stream": message.stream,
                        "line": message.line,
                    }
                )
        else:
            dep = placed
            if dep is None or dep.state in TERMINAL_DEPLOYMENT:
                if message.state in TERMINAL_DEPLOYMENT:
                    batch.forget.append((node, message.deployment))
                return
            self._apply_state(
                dep, message.state, message.error, message.result, message.result_text, batch
            )

    @staticmethod
    def _from_placed(node: str, dep: LiveDeployment, what: str) -> bool:
        """A report is believed only from the node its deployment was placed on."""
        if dep.node == node:
            return True
        log.warning(
            "dropped %s about deployment %s from node %r: it was placed on node %r",
            what,
            dep.id,
            node,
            dep.node,
        )
        return False

    async def forget_vanished(self, deployment_ids: Collection[str]) -> list[str]:
        """Drop the deployments among ``deployment_ids`` that memory holds and the
        store no longer does; returns their ids.

        Only a store changed behind the controller's back loses such rows (one
        restored from an older backup, a failover to a replica that was behind):
        what agents report about them can never be stored, and must not hold up
        the reports that can. Their agents stop them and drop what they keep.
        """
        async with self._lock:
            known = [d for d in deployment_ids if d in self.deployments]
            if not known:
                return []
            async with self.db.read() as conn:
                present = await exp_queries.existing_deployments(conn, known)
            gone = [d for d in known if d not in present]
            for dep_id in gone:
                dep = self.deployments.pop(dep_id)
                log.warning(
                    "deployment %s (experiment %s, node %r) is no longer in the store, which"
                    " was changed behind the controller's back (restored from a backup?):"
                    " what its agent reports is dropped",
                    dep_id,
                    dep.experiment_id,
                    dep.node,
                )
                ended = dep.state in TERMINAL_DEPLOYMENT
                stop = Forget(deployment=dep_id) if ended else Cancel(deployment=dep_id)
                self._send(dep.node, stop)
                live = self.live.get(dep.experiment_id)
                if live is not None:
                    live.deployments.pop(dep_id, None)
                    if not live.deployments:
                        del self.live[live.id]
                        self.flags.drop_experiment(live.id)
                        self.auth.forget_experiment(live.id)
            return gone

    def on_node_lost(self, node: str, batch: WriteBatch, reason: str | None = None) -> None:
        """The node stayed away past the lost timeout: what still runs there is lost."""
        reason = reason or f"node {node!r} was lost: silent for {self.lost_timeout:g} s"
        for dep in list(self.deployments.values()):
            if dep.node == node and dep.state not in TERMINAL_DEPLOYMENT:
                self._finish_deployment(dep, "lost", reason, batch)

    def _add_step(self, step: StepResult, batch: WriteBatch) -> None:
        batch.steps.append(
            {
                "deployment_id": step.deployment,
                "idx": step.index,
                "task_name": step.task_name,
                "ok": step.ok,
                "payload": step.payload,
                "text": step.text,
            }
        )

    def _apply_state(
        self,
        dep: LiveDeployment,
        state: str,
        error: str | None,
        result: bytes | None,
        result_text: str | None,
        batch: WriteBatch,
    ) -> None:
        if state == dep.state:
            return
        if state == "prepared" and dep.state == "preparing":
            batch.set(dep, state="prepared", prepared=True)
            batch.deployment(dep.id, state="prepared", prepared=True)
        elif state == "running" and dep.state in ("prepared", "running"):
            batch.set(dep, state="running")
            batch.deployment(dep.id, state="running")
        elif state in TERMINAL_DEPLOYMENT:
            self._finish_deployment(dep, state, error, batch, result, result_text)
            return
        else:
            return
        live = self.live.get(dep.experiment_id)
        if live:
            batch.unsettled[live.id] = live

    def _finish_deployment(
        self,
        dep: LiveDeployment,
        state: str,
        error: str | None,
        batch: WriteBatch,
        result: bytes | None = None,
        result_text: str | None = None,
    ) -> None:
        batch.set(dep, state=state)
        values: dict[str, Any] = {"state": state, "error": error, "finished_at": time.time()}
        if result is not None:
            values.update(result=result, result_text=result_text)
        batch.deployment(dep.id, **values)
        batch.forget.append((dep.node, dep.id))
        batch.revoke.append(dep.id)
        live = self.live.get(dep.experiment_id)
        if live:
            batch.unsettled[live.id] = live
