"""``/metrics``: the controller's Prometheus metrics (see shoal.controller.metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from shoal.controller.services import bearer, principal, services, user

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics in the text format (a user token, unless --metrics-public)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}, "application/openmetrics-text": {}}}},
)
async def scrape(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Response:
    """Prometheus scrapers seldom log in: a controller started with
    ``--metrics-public`` serves this to anyone who reaches it."""
    # Async on purpose: the collector reads live state, which only this event
    # loop may touch (a sync route would run in a worker thread).
    svc = await services(request)
    if not svc.config.metrics_public:
        await user(await principal(request, credentials))
    body, content_type = svc.metrics.exposition(request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})
