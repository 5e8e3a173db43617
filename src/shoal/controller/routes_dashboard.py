"""The dashboard (a static single-page app at ``/``), its live events, and ``/docs``.

Everything a browser loads comes from the controller itself (``static/``,
vendored at pinned versions by ``scripts/refresh-dashboard-assets.sh``): a
testbed is often offline. The pages hold no data of their own; they log in at
``POST /api/token`` and read the JSON API with the bearer token, like any
client, and ``GET /api/events`` streams what changes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles

from shoal.controller.auth import Principal
from shoal.controller.errors import bad_request
from shoal.controller.live import TOPICS, Watcher
from shoal.controller.schemas import clean_input
from shoal.controller.services import Services, bearer, services, user

STATIC = Path(__file__).resolve().parent / "static"
SWAGGER = "/static/vendor/swagger-ui"
KEEPALIVE = 15.0  # seconds between keep-alive comments (and checks of the token)

router = APIRouter(include_in_schema=False)


def mount(app: FastAPI) -> None:
    """Serve the dashboard at ``/``, its files at ``/static`` and the API docs at ``/docs``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="shoal controller API",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        # Swagger UI would show a badge fetched from its online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/api/events", dependencies=[Depends(clean_input)])
async def events(
    topic: list[str] = Query(default=[]),
    experiment: str | None = Query(default=None, min_length=1, max_length=255),
    caller: Principal = Depends(user),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    svc: Services = Depends(services),
) -> StreamingResponse:
    """Server-sent events for the dashboard's pages.

    ``topic=nodes`` (every node, its state, metrics and what runs there: the
    caller's work by name, other users' as a count) and ``topic=experiments``
    (the caller's experiments with their truthful ``state`` and ``counts``);
    ``experiment=NAME`` adds that experiment as ``GET /api/experiments/NAME``
    gives it (without its reproduction info; a graph session or network of
    over a thousand items with only its running and failed ones, and
    ``items_partial`` true) plus its flags and log tail (event ``experiment``),
    its running commands' output (``output``), and ``gone`` once it is deleted.
    Each event's data is the whole new state of its topic, sent only when it
    changed and at most a few times a second.
    An experiment of another user is 404, as everywhere.
    """
    unknown = sorted(set(topic) - TOPICS)
    if unknown:
        raise bad_request(f"unknown topic(s) {', '.join(unknown)}; known: nodes, experiments")
    experiment_id = None
    if experiment is not None:
        experiment_id = (await svc.experiments.find(caller, experiment))["id"]
    token = credentials.credentials if credentials is not None else ""
    watcher = Watcher(caller, frozenset(topic), experiment_id)
    return StreamingResponse(
        _stream(svc, watcher, token),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(svc: Services, watcher: Watcher, token: str) -> AsyncIterator[str]:
    async with svc.live.watch(watcher):
        yield ": shoal events\n\n"  # the headers go out now, not with the first change
        checked = time.monotonic()
        while True:
            batch = await watcher.next(KEEPALIVE)
            if time.monotonic() - checked >= KEEPALIVE:
                # A token logged out, expired or revoked ends the stream.
                if await svc.auth.resolve(token) is None:
                    yield "event: logout\ndata: {}\n\n"
                    return
                checked = time.monotonic()
            if not batch:
                yield ": keep-alive\n\n"
            else:
                yield "".join(f"event: {t}\ndata: {data}\n\n" for t, data in batch.items())
