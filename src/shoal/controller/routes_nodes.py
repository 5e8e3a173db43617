"""Nodes as the agents report them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from shoal.controller.auth import Principal
from shoal.controller.errors import not_found
from shoal.controller.services import Services, services, user

router = APIRouter(prefix="/api/nodes", tags=["nodes"])


@router.get("", summary="Nodes (online ones unless all=true)")
async def list_nodes(
    all: bool = False, _: Principal = Depends(user), svc: Services = Depends(services)
) -> list[dict]:
    nodes = sorted(svc.registry.nodes.values(), key=lambda n: n.name)
    return [n.to_dict() for n in nodes if all or n.online]


@router.get("/wait", summary="Hold until every named node is online")
async def wait_nodes(
    names: list[str] = Query(default=[]),
    timeout: float = Query(default=30.0, ge=0, le=600),
    _: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    ok = await svc.registry.wait_online(names, min(timeout, svc.config.max_wait))
    missing = [n for n in names if not svc.registry.is_online(n)]
    return {"online": ok, "missing": missing}


@router.delete("/{name}", summary="Forget a node: free its name for a new enrollment")
async def forget_node(
    name: str, _: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    """Its credential stops working and its agent, if connected, is disconnected;
    the next agent that shows the join token with this name enrolls as it.

    Any logged-in user may call this for now (shoal has no operator role yet).
    """
    if not await svc.gateway.forget(name):
        raise not_found(f"node {name!r} is not enrolled")
    return {"name": name, "forgotten": True}
