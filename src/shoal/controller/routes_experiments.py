"""Experiments: prepare, start, status, wait, cancel, delete, logs."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Query, Response

from shoal.controller.auth import Principal
from shoal.controller.errors import bad_request
from shoal.controller.experiments import TERMINAL_EXPERIMENT, NewDeployment
from shoal.controller.routes_runs import cancel_run
from shoal.controller.schemas import (
    INT32_MAX,
    CancelExecutorsIn,
    ExperimentName,
    PrepareIn,
    StartIn,
    clean_input,
)
from shoal.controller.services import Services, services, user
from shoal.model.environment import check_environment_variables
from shoal.store import experiments as exp_queries

router = APIRouter(prefix="/api", tags=["experiments"], dependencies=[Depends(clean_input)])

MAX_PIPELINE = 64 * 1024 * 1024
# The bytes of one deployment's variables: a process environment, not a store.
MAX_ENVIRONMENT = 64 * 1024
_ENCODE = msgspec.json.Encoder().encode


def _json(data: dict[str, Any]) -> Response:
    """An experiment's description as JSON, encoded by msgspec: with a thousand
    deployments FastAPI's own encoding cost the controller more than building it."""
    return Response(_ENCODE(data), media_type="application/json")


@router.get("/experiments", summary="All my experiments, by name")
async def list_experiments(
    caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict[str, dict]:
    return {e["name"]: e for e in await svc.experiments.list(caller)}


@router.post("/experiments", summary="Prepare an experiment (idempotent by name)")
async def prepare(
    body: PrepareIn, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    deployments = []
    for i, d in enumerate(body.deployments):
        try:
            pipeline = base64.b64decode(d.pipeline, validate=True)
        except ValueError:  # binascii.Error, or ValueError for non-ASCII text
            raise bad_request(f"deployment {i} (node {d.node!r}): pipeline is not base64") from None
        if not pipeline or len(pipeline) > MAX_PIPELINE:
            raise bad_request(f"deployment {i} (node {d.node!r}): pipeline is empty or too big")
        where = f"deployment {i} (node {d.node!r})"
        try:
            check_environment_variables(where, d.environment)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if sum(len(k) + len(v) for k, v in d.environment.items()) > MAX_ENVIRONMENT:
            raise bad_request(f"{where}: environment is over {MAX_ENVIRONMENT} bytes")
        deployments.append(NewDeployment(d.node, pipeline, list(d.requirements), d.environment))
    reproduction = svc.records.complete(body.reproduction)

    async def keep_reproduction(conn: Any, experiment_id: str, _deployments: list[str]) -> None:
        await exp_queries.update_experiment(conn, experiment_id, reproduction=reproduction)

    name = await svc.experiments.prepare(
        caller, body.name, deployments, body.kind, on_create=keep_reproduction
    )
    return {"name": name}


@router.get("/experiments/{name}", summary="Status, deployments and results")
async def status(
    name: ExperimentName, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> Response:
    row = await svc.experiments.find(caller, name)
    return _json(await svc.experiments.describe(row["id"]))


@router.get("/experiments/{name}/wait", summary="Hold until the experiment reaches a status")
async def wait(
    name: ExperimentName,
    timeout: float = Query(default=30.0, ge=0, le=3600),
    until: str = Query(default="finished", pattern="^(ready|finished)$"),
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> Response:
    statuses = TERMINAL_EXPERIMENT | ({"READY", "RUNNING"} if until == "ready" else set())
    return _json(
        await svc.experiments.wait(
            caller, name, min(timeout, svc.config.max_wait), frozenset(statuses)
        )
    )


@router.post("/experiments/{name}/start", summary="Start a READY experiment (idempotent)")
async def start(
    name: ExperimentName,
    body: StartIn | None = None,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    return {"name": await svc.experiments.start(caller, name)}


@router.post("/experiments/{name}/cancel", summary="Cancel an experiment or a run")
async def cancel(
    name: ExperimentName, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    """Cancel it; answers with the status it has now (a finished one stays as it was)."""
    row = await svc.experiments.find(caller, name)
    if row["kind"] == "runner":
        return await cancel_run(svc, caller, row)
    if row["kind"] in ("graph", "dataflow"):
        # A graph session fails with the reason at its client's next call; a
        # network's coordinator stops when it next reports or checks its record.
        svc.graphs.cancel_record(row["id"], "cancelled by its user")
        await svc.records.cancel(row)
        row = await svc.experiments.find(caller, name)
        return {"name": name, "status": row["status"]}
    await svc.experiments.cancel(caller, name)
    row = await svc.experiments.find(caller, name)
    return {"name": name, "status": row["status"]}


@router.delete("/experiments/{name}", summary="Delete an experiment and free its name")
async def delete(
    name: ExperimentName, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    await svc.experiments.delete(caller, name)
    return {"deleted": name}


@router.post("/executors/cancel", summary="Cancel particular executors (deployments)")
async def cancel_executors(
    body: CancelExecutorsIn, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    return {"cancelled": await svc.experiments.cancel_executors(caller, body.executors)}


@router.get("/experiments/{name}/logs", summary="Log lines of the experiment's tasks")
async def logs(
    name: ExperimentName,
    after: int = Query(default=0, ge=0, le=INT32_MAX),
    limit: int = Query(default=1000, ge=1, le=10000),
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> list[dict]:
    row = await svc.experiments.find(caller, name)
    async with svc.db.read() as conn:
        deps = await exp_queries.list_deployments(conn, row["id"])
        lines = await exp_queries.list_log_lines(conn, [d["id"] for d in deps], after, limit)
    node_of = {d["id"]: d["node"] for d in deps}
    return [
        {
            "id": r["id"],
            "node": node_of[r["deployment_id"]],
            "executor_id": r["deployment_id"],
            "ts": r["ts"],
            "stream": r["stream"],
            "line": r["line"],
        }
        for r in lines
    ]
