"""netUnicorn experiments on shoal's services: prepare, status, executor reports, keep-alive.

A netUnicorn experiment is a shoal experiment of kind ``netunicorn``: the same
names, owners, statuses, flags and nodes. Each netUnicorn deployment becomes a
shoal deployment running :class:`~shoal.compat.netunicorn.task.NetunicornExecutor`;
what shoal has no column for (the client's deployment description, the
execution graph, the executor's reports) is kept in ``shoal.store.netunicorn``,
written in the same transaction that creates the experiment.

The controller never unpickles anything a netUnicorn client or executor sends:
graphs and results are base64-decoded to bytes, stored, and encoded again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Any

import cloudpickle
from sqlalchemy.ext.asyncio import AsyncConnection

from shoal.compat.netunicorn import wire
from shoal.compat.netunicorn.task import NetunicornExecutor
from shoal.controller.auth import Principal
from shoal.controller.errors import bad_request, conflict, forbidden, not_found
from shoal.controller.experiments import NewDeployment
from shoal.controller.services import Services
from shoal.model.pipeline import Pipeline
from shoal.protocol import DeploymentState
from shoal.store import experiments as exp_queries
from shoal.store import netunicorn as nu_queries
from shoal.store.faults import StoreError, faults

log = logging.getLogger("shoal.compat.netunicorn")

KIND = "netunicorn"
MAX_BLOB = 64 * 1024 * 1024  # largest execution graph or report, decoded
HEARTBEAT_MAX = 30  # netUnicorn's default heartbeat period, in seconds
ENDED = frozenset({"failed", "cancelled", "lost"})
NO_DOCKER = frozenset({"", "0", "false", "no", "none"})


def decode(data: str, what: str) -> bytes:
    """Base64 text to bytes, or a 400 naming ``what``."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} is not base64") from None
    if not raw or len(raw) > MAX_BLOB:
        raise bad_request(f"{what} is empty or larger than {MAX_BLOB} bytes")
    return raw


def encode(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode("ascii") if data else None


def has_docker(properties: dict[str, Any]) -> bool:
    """A node reports a Docker engine with the property ``docker`` (e.g. its version)."""
    return str(properties.get("docker", "")).strip().lower() not in NO_DOCKER


def heartbeat_for(keep_alive: float) -> int:
    """The executor's heartbeat period: netUnicorn's 30 s, or often enough for its keep-alive."""
    return max(1, min(HEARTBEAT_MAX, int(keep_alive / 3)))


class NetunicornService:
    def __init__(self, svc: Services, gateway_path: str, tick: float = 1.0) -> None:
        self.svc = svc
        self.gateway_path = gateway_path
        self.tick = tick
        # Deployments whose executor has not sent its final report: keep-alive seconds.
        self.keep_alive: dict[str, float] = {}
        # Their last sign of life (monotonic), from the first moment they were seen running.
        self.seen: dict[str, float] = {}
        # (executor token, flag) -> the last flag version that executor was shown or wrote.
        self.flag_seen: dict[tuple[str, str], int] = {}

    async def load(self) -> None:
        """After a (re)start: watch the unfinished deployments of unfinished experiments."""
        async with self.svc.db.read() as conn:
            found = await nu_queries.keep_alive_of(conn, list(self.svc.experiments.deployments))
        for deployment_id, (seconds, final) in found.items():
            if not final:
                self.keep_alive[deployment_id] = seconds

    # ------------------------------------------------------------ user actions

    async def find(self, principal: Principal, name: str) -> dict[str, Any] | None:
        async with self.svc.db.read() as conn:
            return await exp_queries.find_experiment(conn, principal.user_id, name)

    async def find_ours(self, principal: Principal, name: str) -> dict[str, Any]:
        row = await self.svc.experiments.find(principal, name)
        if row["kind"] != KIND:
            raise not_found(
                f"experiment {name!r} is a shoal {row['kind']!r} experiment, not a netUnicorn one"
            )
        return row

    async def prepare(self, principal: Principal, name: str, body: wire.ExperimentIn) -> str:
        existing = await self.find(principal, name)
        if existing is not None:
            _same_kind(name, existing)
            return name  # prepare is idempotent under retries
        deployments: list[NewDeployment] = []
        rows: list[dict[str, Any]] = []
        for position, d in enumerate(body.deployment_map):
            where = f"deployment {position} (node {d.node.name!r})"
            graph = decode(d.execution_graph, f"{where}: execution_graph")
            task, requirements = self._executor_task(where, d)
            pipeline = Pipeline(name=f"netunicorn {name} #{position}").then(task)
            deployments.append(
                NewDeployment(d.node.name, cloudpickle.dumps(pipeline), requirements)
            )
            rows.append(
                {
                    "position": position,
                    "spec": d.model_dump(
                        mode="json",
                        exclude_unset=True,
                        exclude={"execution_graph", "prepared", "executor_id", "error"},
                    ),
                    "execution_graph": graph,
                    "keep_alive": float(d.keep_alive_timeout_minutes) * 60,
                    "final": False,
                }
            )
        created: dict[str, float] = {}

        async def on_create(conn: AsyncConnection, experiment_id: str, ids: list[str]) -> None:
            mine = [
                {**row, "deployment_id": dep_id, "experiment_id": experiment_id}
                for row, dep_id in zip(rows, ids, strict=True)
            ]
            await nu_queries.create(conn, experiment_id, body.deployment_context, mine)
            created.update((row["deployment_id"], row["keep_alive"]) for row in mine)

        await self.svc.experiments.prepare(principal, name, deployments, KIND, on_create=on_create)
        if not created:
            # Another request created the name between our look and shoal's.
            existing = await self.find(principal, name)
            if existing is not None:
                _same_kind(name, existing)
        self.keep_alive.update(created)
        return name

    def _executor_task(
        self, where: str, d: wire.NetunicornDeploymentIn
    ) -> tuple[NetunicornExecutor, list[str]]:
        """The shoal task that runs this deployment's executor, and its requirements."""
        env_def = d.environment_definition
        context = env_def.runtime_context
        if context.additional_arguments:
            raise bad_request(
                f"{where}: runtime_context.additional_arguments "
                f"{context.additional_arguments!r} are not supported on shoal"
            )
        for key, value in context.environment_variables.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise bad_request(f"{where}: environment variable {key!r} is not valid")
        ports: dict[int, int] = {}
        for host_port, container_port in context.ports_mapping.items():
            try:
                ports[int(host_port)] = container_port
            except ValueError:
                raise bad_request(f"{where}: port {host_port!r} is not a number") from None
        image = env_def.image if d.environment_definition_type == "DockerImage" else None
        if image is not None:
            info = self.svc.registry.nodes.get(d.node.name)
            # An unknown node is refused by shoal's prepare, with the known names.
            if info is not None and not has_docker(info.properties):
                raise bad_request(
                    f"{where}: DockerImage({image!r}) needs a Docker engine, and node "
                    f"{d.node.name!r} reports none (an agent reports one with "
                    "--property docker=VERSION). DockerImage() without an image and "
                    "ShellExecution() run directly on any node."
                )
        keep_alive = float(d.keep_alive_timeout_minutes) * 60
        task = NetunicornExecutor(
            gateway_path=self.gateway_path,
            environment=dict(context.environment_variables),
            heartbeat_seconds=heartbeat_for(keep_alive),
            image=image,
            ports=ports,
            network=context.network,
            cleanup=d.cleanup,
            name="netunicorn-executor",
        )
        # Without an image the environment's commands run on the node itself,
        # before the executor starts, as any shoal requirement does; an image
        # was built elsewhere and brings its own.
        requirements = [] if image is not None else list(env_def.commands)
        return task, requirements

    async def list_experiments(self, principal: Principal) -> dict[str, dict[str, Any]]:
        async with self.svc.db.read() as conn:
            rows = await exp_queries.list_experiments(conn, principal.user_id)
        return {row["name"]: await self.information(row) for row in rows if row["kind"] == KIND}

    async def status(self, principal: Principal, name: str) -> dict[str, Any]:
        return await self.information(await self.find_ours(principal, name))

    async def information(self, row: dict[str, Any]) -> dict[str, Any]:
        """An ``ExperimentExecutionInformationRepresentation``."""
        started = row["started_at"] is not None
        async with self.svc.db.read() as conn:
            deps = {d["id"]: d for d in await exp_queries.list_deployments(conn, row["id"])}
            ours = await nu_queries.list_deployments(conn, row["id"])
            extra = await nu_queries.get_experiment(conn, row["id"])
            steps = await exp_queries.list_step_results(conn, list(deps)) if started else {}
        deployment_map, results = [], []
        for n in ours:
            d = deps.get(n["deployment_id"])
            if d is None:
                continue
            graph = encode(n["execution_graph"])
            deployment_map.append(
                {
                    **n["spec"],
                    "prepared": bool(d["prepared"]),
                    "executor_id": d["id"],
                    "error": None if d["prepared"] else d["error"],
                    "execution_graph": graph,
                }
            )
            results.append(
                {
                    "node": n["spec"]["node"],
                    "execution_graph": graph,
                    "result": encode(n["result"]),
                    "error": _run_error(d, n, steps.get(d["id"], [])),
                }
            )
        execution_result: list[dict[str, Any]] | str | None = None
        if started:
            execution_result = results
        elif row["error"]:
            execution_result = row["error"]
        return {
            "status": wire.STATUS.get(row["status"], wire.UNKNOWN),
            "experiment": {
                "deployment_map": deployment_map,
                "deployment_context": extra["deployment_context"] if extra else None,
            },
            "execution_result": execution_result,
        }

    # -------------------------------------------------------- executor actions

    async def deployment_of(self, caller: Principal, executor_id: str) -> dict[str, Any]:
        """The executor's deployment, if it belongs to the caller's experiment."""
        async with self.svc.db.read() as conn:
            row = await nu_queries.get_deployment(conn, executor_id)
        if row is None or row["experiment_id"] != caller.experiment_id:
            raise not_found(f"no executor {executor_id!r} in this experiment")
        return row

    async def execution_graph(self, caller: Principal, executor_id: str) -> bytes:
        row = await self.deployment_of(caller, executor_id)
        self.touch(executor_id)
        return row["execution_graph"]

    async def report(self, caller: Principal, body: wire.ExecutorResultIn) -> None:
        """A heartbeat (state EXECUTING, with the results so far) or the final report."""
        await self.deployment_of(caller, body.executor_id)
        data = decode(body.results, "results")
        final = body.state in (wire.REPORTING, wire.DONE)
        async with self.svc.db.write() as conn:
            await nu_queries.put_result(conn, body.executor_id, data, final, time.time())
        if final:
            self.keep_alive.pop(body.executor_id, None)
            self.seen.pop(body.executor_id, None)
        else:
            self.touch(body.executor_id)

    def touch(self, executor_id: str) -> None:
        if executor_id in self.keep_alive:
            self.seen[executor_id] = time.monotonic()

    def check_scope(self, caller: Principal, experiment_id: str) -> str:
        if experiment_id != caller.experiment_id:
            raise forbidden("this executor's gateway reaches only its own experiment")
        return experiment_id

    # --------------------------------------------------------------- keep-alive

    async def watchdog(self) -> None:
        """Fail running executors that stay silent longer than their keep-alive."""
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self.check_keep_alive()
            except StoreError as fault:
                # The executors stay watched; the next tick tries again.
                faults.failed("failing silent netUnicorn executors", fault)

    async def check_keep_alive(self) -> None:
        now = time.monotonic()
        live = self.svc.experiments.deployments
        expired = []
        for deployment_id, seconds in list(self.keep_alive.items()):
            dep = live.get(deployment_id)
            if dep is None:  # ended or deleted: nothing left to watch
                self.keep_alive.pop(deployment_id, None)
                self.seen.pop(deployment_id, None)
                continue
            if dep.state != "running":
                continue
            # The clock starts when the deployment is first seen running.
            last = self.seen.setdefault(deployment_id, now)
            if now - last > seconds:
                expired.append((dep.node, deployment_id, seconds))
        for node, deployment_id, seconds in expired:
            await self._expire(node, deployment_id, seconds)

    async def _expire(self, node: str, deployment_id: str, seconds: float) -> None:
        error = (
            f"keep-alive timeout: the executor on {node!r} sent nothing for {seconds:g} s "
            f"(keep_alive_timeout_minutes={seconds / 60:g}); it was stopped"
        )
        log.warning("netUnicorn executor %s: %s", deployment_id, error)
        async with self.svc.db.write() as conn:
            await nu_queries.set_error(conn, deployment_id, error)
        # The same path as an agent reporting the failure: stored, then the
        # agent is told to forget the deployment, which stops its executor.
        failed = DeploymentState(deployment=deployment_id, state="failed", error=error)
        await self.svc.experiments.apply(
            lambda batch: self.svc.experiments.on_agent_message(node, failed, batch)
        )
        # Only now: if the store failed above, the next tick tries again.
        self.keep_alive.pop(deployment_id, None)
        self.seen.pop(deployment_id, None)


def _same_kind(name: str, row: dict[str, Any]) -> None:
    if row["kind"] != KIND:
        raise conflict(
            f"the name {name!r} is taken by a shoal {row['kind']!r} experiment; "
            "delete it or choose another name"
        )


def _run_error(d: dict[str, Any], n: dict[str, Any], steps: list[dict[str, Any]]) -> str | None:
    """What went wrong with a deployment's run, in netUnicorn's per-deployment ``error``."""
    if n["error"]:
        return n["error"]
    if d["state"] in ENDED:
        return d["error"] or d["state"]
    if d["state"] == "finished" and not n["final"]:
        # The executor ended without its final report: the shoal step says why.
        failed = [s["text"] for s in steps if not s["ok"]]
        if failed:
            return failed[0]
    return None
