"""Experiments: prepare, start, cancel, delete, and what agents report about them.

The live state of unfinished experiments is kept in memory and every change is
written to the store before it is acknowledged (to a user, or to an agent by a
``Forget``). Reads for users come from the store, which is always at least as
new as the last acknowledged change.

Memory and store never disagree: a change is made to memory through a
``WriteBatch`` (``batch.set``), and if the store does not commit the batch the
change is rolled back and ``StoreError`` raised, so the caller (a user's
request, or the agent gateway, which retries) can try again from the same
state. Messages that follow from a change go out only after the commit.

The live state's types are in ``experiment_state``, what users read in
``experiment_views`` and what agents report in ``experiment_reports`` (parts of
the one service, which this module puts together; the names other modules
import from here still are).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from shoal.controller.auth import Authenticator, Principal, new_token, token_digest
from shoal.controller.batch import WriteBatch
from shoal.controller.changes import ChangeFeed
from shoal.controller.errors import bad_request, conflict, not_found
from shoal.controller.experiment_reports import AgentReports
from shoal.controller.experiment_state import (
    MAX_NAME,
    RECONNECT_GRACE,
    TERMINAL_DEPLOYMENT,
    TERMINAL_EXPERIMENT,
    LiveDeployment,
    LiveExperiment,
    NewDeployment,
    check_name,
)
from shoal.controller.experiment_views import ExperimentViews
from shoal.controller.flags import FlagService
from shoal.controller.registry import NodeRegistry
from shoal.model.experiment import settle_status
from shoal.protocol import (
    Cancel,
    Forget,
    Prepare,
    Start,
)
from shoal.store import commands as command_queries
from shoal.store import experiments as exp_queries
from shoal.store import users as user_queries
from shoal.store.database import Database

log = logging.getLogger("shoal.controller.experiments")

__all__ = [
    "MAX_NAME",
    "RECONNECT_GRACE",
    "TERMINAL_DEPLOYMENT",
    "TERMINAL_EXPERIMENT",
    "ExperimentService",
    "LiveDeployment",
    "LiveExperiment",
    "NewDeployment",
    "check_name",
]

T = TypeVar("T")


class ExperimentService(ExperimentViews, AgentReports):
    def __init__(
        self,
        db: Database,
        registry: NodeRegistry,
        flags: FlagService,
        auth: Authenticator,
        heartbeat_timeout: float,
        lost_timeout: float | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.flags = flags
        self.auth = auth
        self.heartbeat_timeout = heartbeat_timeout
        self.lost_timeout = lost_timeout if lost_timeout is not None else heartbeat_timeout
        # Agents retry with a backoff of at most a few seconds; after a restart
        # they get at least this long to come back before their running work is
        # lost, and never less than a node that went silent gets.
        self.reconnect_grace = max(self.lost_timeout, heartbeat_timeout + RECONNECT_GRACE)
        self.live: dict[str, LiveExperiment] = {}
        self.deployments: dict[str, LiveDeployment] = {}
        self.changed = asyncio.Condition()
        self.feed = ChangeFeed()  # what the dashboard refreshes
        self._lock = asyncio.Lock()
        # Deployments that ended since start, by final state, for /metrics.
        self.deployments_ended: dict[str, int] = dict.fromkeys(TERMINAL_DEPLOYMENT, 0)

    # ------------------------------------------------------------------ startup

    async def load(self) -> None:
        """Take up the unfinished experiments of a previous run of the controller.

        Each is settled again from its deployments as stored: one whose
        deployments all ended (a crash came between the two writes, or an older
        controller left it so) is moved to its final status now.
        """
        async with self.db.write() as conn:
            await user_queries.delete_dead_tokens(conn)
        async with self.db.read() as conn:
            active = await exp_queries.list_active_experiments(conn)
            for row in active:
                if row["kind"] == "runner":
                    continue  # driven by its client, which finishes or cancels it
                live = LiveExperiment(row["id"], row["owner_id"], row["name"], row["status"])
                for d in await exp_queries.list_deployments(conn, row["id"]):
                    dep = LiveDeployment(
                        d["id"], row["id"], d["node"], d["state"], bool(d["prepared"])
                    )
                    live.deployments[dep.id] = dep
                    if dep.state not in TERMINAL_DEPLOYMENT:
                        self.deployments[dep.id] = dep
                        self.registry.expect(dep.node, self.reconnect_grace)
                self.live[live.id] = live
        batch = WriteBatch()
        for live in list(self.live.values()):
            self._settle(live, batch)
        await self._flush(batch)

    # ------------------------------------------------------------ user actions

    async def find(self, principal: Principal, name: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await exp_queries.find_experiment(conn, principal.user_id, name)
        if row is None:
            raise not_found(f"experiment {name!r} not found")
        return row

    async def prepare(
        self,
        principal: Principal,
        name: str,
        deployments: list[NewDeployment],
        kind: str = "pipelines",
        on_create: Callable[[Any, str, list[str]], Awaitable[None]] | None = None,
    ) -> str:
        """Create the experiment and send its deployments to the agents.

        ``on_create(conn, experiment_id, deployment_ids)`` runs inside the
        transaction that creates the experiment, so a front-end's own rows are
        stored together with it or not at all.
        """
        check_name(name)
        if not deployments:
            raise bad_request(f"experiment {name!r} has no deployments: map a pipeline to nodes")
        async with self._lock:
            async with self.db.read() as conn:
                if await exp_queries.find_experiment(conn, principal.user_id, name):
                    return name  # prepare is idempotent under retries
            unknown = sorted({d.node for d in deployments if d.node not in self.registry.nodes})
            if unknown:
                known = ", ".join(sorted(self.registry.nodes)) or "none"
                raise bad_request(
                    f"experiment {name!r} names unknown node(s): {', '.join(unknown)}"
                    f" (known nodes: {known})"
                )
            offline = sorted({d.node for d in deployments if not self.registry.is_online(d.node)})
            if offline:
                raise conflict(f"experiment {name!r} needs offline node(s): {', '.join(offline)}")
            experiment_id = str(uuid.uuid4())
            live = LiveExperiment(experiment_id, principal.user_id, name, "PREPARING")
            rows, messages = [], []
            token_rows: dict[str, str] = {}  # deployment id -> its executor token's hash
            for position, new in enumerate(deployments):
                dep_id = str(uuid.uuid4())
                live.deployments[dep_id] = LiveDeployment(
                    dep_id, experiment_id, new.node, "preparing", False
                )
                rows.append(
                    {
                        "id": dep_id,
                        "experiment_id": experiment_id,
                        "position": position,
                        "node": new.node,
                        "pipeline": new.pipeline,
                        "requirements": new.requirements,
                        "environment": new.environment,
                        "state": "preparing",
                        "prepared": False,
                    }
                )
                token = new_token()
                token_rows[dep_id] = token_digest(token)
                messages.append(
                    (
                        new.node,
                        self._prepare_message(
                            live, dep_id, new.pipeline, new.requirements, token, new.environment
                        ),
                    )
                )
            async with self.db.write() as conn:
                await exp_queries.create_experiment(
                    conn, experiment_id, principal.user_id, name, kind, "PREPARING", rows
                )
                await user_queries.add_executor_tokens(
                    conn, principal.user_id, experiment_id, token_rows
                )
                if on_create is not None:
                    await on_create(conn, experiment_id, [row["id"] for row in rows])
            self.live[experiment_id] = live
            self.deployments.update(live.deployments)
            self.feed.touch([experiment_id])
            for node, message in messages:
                self._send(node, message)
        return name

    async def create_run(self, principal: Principal, name: str) -> str:
        """Open a run of the runner front-end: an experiment driven by the client.

        A later run with the same name replaces the earlier one (the runner's
        experiments are named after their functions and parameters).
        """
        check_name(name)
        async with self._lock:
            async with self.db.read() as conn:
                old = await exp_queries.find_experiment(conn, principal.user_id, name)
            if old is not None and old["kind"] != "runner":
                raise conflict(f"the name {name!r} is taken by a {old['kind']} experiment")
            experiment_id = str(uuid.uuid4())
            async with self.db.write() as conn:
                if old is not None:
                    await command_queries.delete_commands(conn, old["id"])
                    await exp_queries.delete_experiment(conn, old["id"])
                await exp_queries.create_experiment(
                    conn, experiment_id, principal.user_id, name, "runner", "RUNNING", []
                )
                await exp_queries.update_experiment(conn, experiment_id, started_at=time.time())
        if old is not None:
            self.flags.drop_experiment(old["id"])
        self.feed.touch([experiment_id, old and old["id"]])
        await self._notify()
        return experiment_id

    async def finish_run(
        self, principal: Principal, name: str, status: str, error: str | None
    ) -> str:
        """Close a run with its outcome; the status it ends with.

        A run cancelled meanwhile (``shoal cancel``) stays CANCELLED, whatever
        its client reports once its killed commands come back.
        """
        row = await self.find(principal, name)
        if row["kind"] != "runner":
            raise conflict(f"{name!r} is a {row['kind']} experiment, not a run")
        if row["status"] == "CANCELLED":
            return "CANCELLED"
        async with self.db.write() as conn:
            await exp_queries.update_experiment(
                conn, row["id"], status=status, error=error, finished_at=time.time()
            )
        self.feed.touch([row["id"]])
        await self._notify()
        return status

    def _prepare_message(
        self,
        live: LiveExperiment,
        dep_id: str,
        pipeline: bytes,
        requirements: list[str],
        token: str,
        environment: dict[str, str] | None = None,
    ) -> Prepare:
        env = {
            # The deployment's own variables first: shoal's names are never theirs.
            **(environment or {}),
            "SHOAL_EXECUTOR_TOKEN": token,
            "SHOAL_EXPERIMENT": live.name,
            "SHOAL_EXPERIMENT_ID": live.id,
            "SHOAL_EXECUTOR_ID": dep_id,
        }
        return Prepare(
            deployment=dep_id,
            experiment=live.id,
            pipeline=pipeline,
            requirements=list(requirements),
            env=env,
        )

    async def start(self, principal: Principal, name: str) -> str:
        async with self._lock:
            row = await self.find(principal, name)
            status = row["status"]
            if status in ("RUNNING", "FINISHED", "FAILED"):
                return name  # start is idempotent under retries
            if status == "CANCELLED":
                raise conflict(f"experiment {name!r} was cancelled; delete it and prepare again")
            if status == "PREPARING":
                raise conflict(f"experiment {name!r} is still preparing; start it once READY")
            live = self.live[row["id"]]
            batch = WriteBatch()
            now = time.time()
            batch.set(live, status="RUNNING")
            batch.experiment(live.id, status="RUNNING", started_at=now)
            for dep in live.deployments.values():
                if dep.state == "prepared":
                    batch.set(dep, state="running")
                    batch.deployment(dep.id, state="running", started_at=now)
                    batch.send(dep.node, Start(deployment=dep.id))
            self._settle(live, batch)
            await self._flush(batch)
        return name

    async def cancel(self, principal: Principal, name: str) -> str:
        async with self._lock:
            row = await self.find(principal, name)
            live = self.live.get(row["id"])
            if live is None or live.status in TERMINAL_EXPERIMENT:
                return name
            batch = WriteBatch()
            for dep in live.deployments.values():
                self._cancel_deployment(dep, batch)
            batch.set(live, status="CANCELLED")
            batch.experiment(live.id, status="CANCELLED", finished_at=time.time())
            batch.finished_experiments.append(live.id)
            batch.revoke.extend(live.deployments)
            await self._flush(batch)
        return name

    async def cancel_executors(self, principal: Principal, executor_ids: list[str]) -> list[str]:
        async with self._lock:
            batch = WriteBatch()
            touched: dict[str, LiveExperiment] = {}
            for executor_id in executor_ids:
                dep = self.deployments.get(executor_id)
                live = self.live.get(dep.experiment_id) if dep else None
                if dep is None or live is None or live.owner_id != principal.user_id:
                    raise not_found(f"no running executor {executor_id!r}")
                self._cancel_deployment(dep, batch)
                touched[live.id] = live
            for live in touched.values():
                self._settle(live, batch)
            await self._flush(batch)
        return executor_ids

    def _cancel_deployment(self, dep: LiveDeployment, batch: WriteBatch) -> None:
        if dep.state in TERMINAL_DEPLOYMENT:
            return
        batch.set(dep, state="cancelled")
        batch.deployment(dep.id, state="cancelled", error="cancelled", finished_at=time.time())
        batch.revoke.append(dep.id)
        batch.send(dep.node, Cancel(deployment=dep.id))

    async def delete(self, principal: Principal, name: str) -> None:
        async with self._lock:
            row = await self.find(principal, name)
            if row["status"] in ("PREPARING", "RUNNING"):
                raise conflict(
                    f"experiment {name!r} is {row['status']}; cancel it before deleting it"
                )
            async with self.db.write() as conn:
                await user_queries.delete_experiment_tokens(conn, row["id"])
                await command_queries.delete_commands(conn, row["id"])
                await exp_queries.delete_experiment(conn, row["id"])
            live = self.live.pop(row["id"], None)
            if live:
                for dep in live.deployments.values():
                    if dep.state not in TERMINAL_DEPLOYMENT:
                        self._send(dep.node, Cancel(deployment=dep.id))
                    self.deployments.pop(dep.id, None)
            self.flags.drop_experiment(row["id"])
            self.auth.forget_experiment(row["id"])
            self.feed.touch([row["id"]])
        await self._notify()

    async def apply(self, change: Callable[[WriteBatch], T]) -> T:
        """Run ``change`` (it updates the live state and fills a batch) and store the batch.

        Both happen under the service's lock, so the store sees changes in the
        order memory saw them: a waiter woken by "experiment FINISHED" never
        reads a deployment whose own final state is still being written.
        If the store does not take the batch, the live state is put back and
        ``StoreError`` raised: ``apply`` may simply be called again.
        """
        async with self._lock:
            batch = WriteBatch()
            try:
                result = change(batch)
            except BaseException:
                batch.rollback()
                raise
            await self._flush(batch)
            return result

    # ---------------------------------------------------------------- internals

    def _settle(self, live: LiveExperiment, batch: WriteBatch) -> None:
        """Move the experiment on once its deployments allow it (the rule is
        :func:`shoal.model.experiment.settle_status`); called on every change of
        a deployment and for every unfinished experiment at load."""
        status, error = settle_status(
            live.status, [(d.node, d.state) for d in live.deployments.values()]
        )
        if status == live.status:
            return
        batch.set(live, status=status)
        if status in TERMINAL_EXPERIMENT:
            batch.experiment(live.id, status=status, error=error, finished_at=time.time())
            batch.finished_experiments.append(live.id)
        else:
            batch.experiment(live.id, status=status)

    async def _flush(self, batch: WriteBatch) -> None:
        """Store ``batch``, then act on it; if the store fails, undo it in memory."""
        for live in batch.unsettled.values():
            self._settle(live, batch)
        batch.unsettled.clear()
        if batch:
            try:
                async with self.db.write() as conn:
                    await batch.flush(conn)
            except BaseException:
                # Also when cancelled mid-commit: memory must never be ahead of
                # the store; if the commit did land, the agent's next report
                # (kept until Forget) makes the same idempotent writes again.
                batch.rollback()
                raise
        for values in batch.deployments.values():
            # A deployment's final state is written once: memory moves it there once.
            if values.get("state") in TERMINAL_DEPLOYMENT:
                self.deployments_ended[values["state"]] += 1
        if self.feed.active:
            self.feed.touch(self._touched_by(batch))
        for node, message in batch.messages:
            self._send(node, message)
        for node, dep_id in batch.forget:
            self._send(node, Forget(deployment=dep_id))
            self.deployments.pop(dep_id, None)
        for experiment_id in batch.finished_experiments:
            self.live.pop(experiment_id, None)
        self.auth.forget_deployments(batch.revoke)
        if batch.experiments or batch.deployments:
            await self._notify()

    def _touched_by(self, batch: WriteBatch) -> set[str | None]:
        """The experiments a stored batch changed (its deployments are still known)."""
        deployment_ids = {
            *batch.deployments,
            *(s["deployment_id"] for s in batch.steps),
            *(line["deployment_id"] for line in batch.logs),
        }
        touched: set[str | None] = set(batch.experiments)
        for dep_id in deployment_ids:
            dep = self.deployments.get(dep_id)
            touched.add(dep.experiment_id if dep else None)
        return touched

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def notify(self, changed: Iterable[str | None] = ()) -> None:
        """Wake whoever waits on a change of experiments (another service changed
        ``changed``, which the dashboard then refreshes)."""
        self.feed.touch(changed)
        await self._notify()

    def _send(self, node: str, message: Any) -> None:
        link = self.registry.link(node)
        if link is not None:
            link.send(message)
