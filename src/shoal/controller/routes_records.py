"""Records of client-driven work of the other front-ends (dataflow networks): the
client opens one, reports its jobs as they change, and closes it with its outcome."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field, StrictFloat, StrictInt, StrictStr

from shoal.controller.auth import Principal
from shoal.controller.records import CLIENT_DRIVEN
from shoal.controller.schemas import ExperimentName, Text, _Strict, clean_input
from shoal.controller.services import Services, services, user

router = APIRouter(prefix="/api/records", tags=["records"], dependencies=[Depends(clean_input)])


class RecordIn(_Strict):
    name: StrictStr = Field(min_length=1, max_length=190)
    kind: StrictStr = Field(pattern="^(" + "|".join(sorted(CLIENT_DRIVEN)) + ")$")
    reproduction: dict[str, Any] = {}


class ItemIn(_Strict):
    id: StrictInt = Field(ge=0, le=2**62)
    kind: StrictStr = Field(pattern="^(job|task|object)$")
    name: Text = Field(max_length=1000)
    type: Text = Field(max_length=255)
    node: Text | None = Field(default=None, max_length=255)
    state: StrictStr = Field(pattern="^[a-z]{1,16}$")
    started_at: StrictFloat | None = None
    finished_at: StrictFloat | None = None
    error: Text | None = None
    info: dict[str, Any] = {}


class UpdateIn(_Strict):
    items: list[ItemIn] = Field(default=[], max_length=100_000)
    summary: dict[str, Any] | None = None
    status: StrictStr | None = Field(default=None, pattern="^(FINISHED|FAILED|CANCELLED)$")
    error: Text | None = None


@router.post("", summary="Open the record of a client-driven run (a dataflow network)")
async def open_record(
    body: RecordIn, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    """Answers with the record's name: ``name``, or ``name-N`` if that was taken."""
    record_id, name = await svc.records.create(
        caller.user_id, body.name, body.kind, body.reproduction
    )
    return {"id": record_id, "name": name}


@router.put("/{name}", summary="Report a record's changed items, summary and outcome")
async def update_record(
    name: ExperimentName,
    body: UpdateIn,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    """Answers with the record's status now: CANCELLED if its user cancelled it."""
    status = await svc.records.update(
        caller.user_id,
        name,
        [item.model_dump() for item in body.items],
        body.summary,
        body.status,
        body.error,
    )
    return {"name": name, "status": status}
