"""Runs of the runner front-end: experiments driven command by command from a client."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field, StrictStr

from shoal.controller.auth import Principal
from shoal.controller.experiments import TERMINAL_EXPERIMENT
from shoal.controller.schemas import ExperimentName, Text, _Strict, clean_input
from shoal.controller.services import Services, services, user

router = APIRouter(prefix="/api/runs", tags=["runs"], dependencies=[Depends(clean_input)])


class RunIn(_Strict):
    name: StrictStr = Field(min_length=1, max_length=200)
    reproduction: dict[str, Any] | None = None


class FinishIn(_Strict):
    status: StrictStr = Field(pattern="^(FINISHED|FAILED|CANCELLED)$")
    error: Text | None = None


@router.post("", summary="Open a run (replaces an earlier run of the same name)")
async def open_run(
    body: RunIn, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    experiment_id = await svc.experiments.create_run(caller, body.name)
    await svc.records.set_reproduction(experiment_id, body.reproduction)
    svc.relay.run_owners[experiment_id] = caller.user_id
    return {"id": experiment_id, "name": body.name}


@router.post("/{name}/finish", summary="Close a run with its outcome")
async def finish_run(
    name: ExperimentName,
    body: FinishIn,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    row = await svc.experiments.find(caller, name)
    await svc.relay.end_run(row["id"])  # its commands' records are stored first
    status = await svc.experiments.finish_run(caller, name, body.status, body.error)
    return {"name": name, "status": status}


async def cancel_run(svc: Services, caller: Principal, row: dict) -> dict:
    """Cancel a run that is still going: recorded CANCELLED first (so its client's
    own report cannot undo it), then closed to new commands and its commands killed."""
    if row["status"] in TERMINAL_EXPERIMENT:
        return {"name": row["name"], "status": row["status"], "killed": 0}
    await svc.experiments.finish_run(caller, row["name"], "CANCELLED", "cancelled by its user")
    killed = await svc.relay.end_run(row["id"], kill=True)
    return {"name": row["name"], "status": "CANCELLED", "killed": killed}
