"""Nodes as the agents report them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from shoal.controller.auth import Principal
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
