"""Nodes as the agents report them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query
from fastapi.security import HTTPAuthorizationCredentials

from shoal.controller.auth import Principal
from shoal.controller.enrollment import EnrollmentRefused
from shoal.controller.errors import conflict, not_found, unauthorized
from shoal.controller.services import Services, bearer, services, user

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


@router.post(
    "/{name}/enroll",
    status_code=201,
    summary="Enroll a node before its agent starts (shows the join token)",
)
async def enroll_node(
    name: str = Path(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f/]+$"),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    svc: Services = Depends(services),
) -> dict:
    """Bind node ``name`` to a new credential and return it, once.

    ``shoal deploy`` calls this with the join token and puts the credential on
    the host itself, so the join token never lies on a host's disk. 409 if the
    name is enrolled already (``shoal node forget`` frees it).
    """
    secret = credentials.credentials if credentials is not None else ""
    admission = await svc.gateway.enrollment.admit(secret)
    if admission is None or not admission.by_join_token:
        raise unauthorized("enrolling a node needs the join token as bearer token")
    try:
        credential = await svc.gateway.enrollment.enroll(admission, name)
    except EnrollmentRefused as exc:
        raise conflict(str(exc)) from None
    return {"name": name, "credential": credential}
