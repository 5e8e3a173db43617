"""Channel grants: what an opener needs to open a channel to a node's endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import Field, StrictStr

from shoal.controller.auth import Principal
from shoal.controller.errors import conflict, forbidden, not_found
from shoal.controller.schemas import _Strict, clean_input
from shoal.controller.services import Services, principal, services

router = APIRouter(prefix="/api/channels", tags=["channels"], dependencies=[Depends(clean_input)])


class ChannelIn(_Strict):
    node: StrictStr = Field(min_length=1, max_length=200)
    endpoint: StrictStr = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")


@router.post("", summary="A grant to open a channel to an endpoint on a node")
async def grant_channel(
    body: ChannelIn, caller: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict:
    """The channel's id, a capability for this caller, node and endpoint (good for
    a minute), and the node's direct addresses when it may be reached directly;
    open it there, or through ``/api/channels/relay``."""
    if caller.kind not in ("user", "executor"):
        raise forbidden(f"a {caller.kind} token cannot open channels")
    if body.node not in svc.registry.nodes:
        raise not_found(f"no node named {body.node!r}")
    if not svc.registry.is_online(body.node):
        raise conflict(f"node {body.node!r} is not online")
    grant = await svc.channel_service.grant_for(caller, body.node, body.endpoint)
    if isinstance(grant, str):
        raise forbidden(grant)
    return {f: getattr(grant, f) for f in grant.__struct_fields__}
