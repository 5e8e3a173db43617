"""The FastAPI application of a controller."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.websockets import WebSocketState

from shoal import taskdump
from shoal.compat.netunicorn.server import PREFIX as NETUNICORN
from shoal.compat.netunicorn.server import mount as mount_netunicorn
from shoal.controller import (
    routes_auth,
    routes_channels,
    routes_dashboard,
    routes_experiments,
    routes_flags,
    routes_metrics,
    routes_nodes,
    routes_records,
    routes_runs,
)
from shoal.controller.agent_gateway import CLOSE_TRY_AGAIN_LATER, AgentGateway
from shoal.controller.auth import Authenticator, hash_password
from shoal.controller.channel_relay import ChannelService
from shoal.controller.commands import ENDPOINT as COMMANDS
from shoal.controller.commands import CommandRecorder
from shoal.controller.config import ControllerConfig
from shoal.controller.enrollment import NodeEnrollment, setup_join_token
from shoal.controller.experiments import ExperimentService
from shoal.controller.flag_calls import ExecutorFlagCalls
from shoal.controller.flag_fast_path import FlagFastPath
from shoal.controller.flags import FlagService
from shoal.controller.graph_gateway import GraphGateway
from shoal.controller.graph_records import GraphRecorder
from shoal.controller.graph_service import GraphService
from shoal.controller.limits import BodyLimits, RequestLimits
from shoal.controller.live import LiveHub
from shoal.controller.metrics import ControllerMetrics
from shoal.controller.records import RecordService
from shoal.controller.registry import KnownNode, NodeRegistry
from shoal.controller.services import Services
from shoal.private import write_private
from shoal.store import nodes as node_queries
from shoal.store import users as user_queries
from shoal.store.database import Database
from shoal.store.faults import StoreError, faults

log = logging.getLogger("shoal.controller")


async def build_services(config: ControllerConfig) -> Services:
    metrics = ControllerMetrics()
    db = Database(config.db_url)
    db.on_write = metrics.store_writes.observe
    await db.create_schema()
    async with db.write() as conn:
        for login, password in config.bootstrap_users:
            await user_queries.put_user(conn, login, hash_password(password))
        made_up = await setup_join_token(conn, config.agent_token)
        # Nobody is connected to a controller that just started.
        await node_queries.mark_all_offline(conn)
        stored_nodes = await node_queries.list_nodes(conn)
    join_token = made_up or config.agent_token
    if config.token_file and join_token:
        write_private(config.token_file, join_token + "\n")
        log.info("the agents' join token is in %s", config.token_file)
    registry = NodeRegistry()
    for row in stored_nodes:
        registry.nodes[row["name"]] = KnownNode(
            name=row["name"],
            architecture=row["architecture"],
            cpus=row["cpus"],
            properties=dict(row["properties"] or {}),
        )
    auth = Authenticator(db, config.token_ttl)
    flags = FlagService(db)
    experiments = ExperimentService(
        db, registry, flags, auth, config.heartbeat_timeout, lost_timeout=config.lost_timeout
    )
    await experiments.load()
    records = RecordService(db, registry, experiments)
    await records.load()
    relay = CommandRecorder(db, registry, auth)
    await relay.load()
    graphs = GraphService(registry, config.graph_capability_ttl)
    enrollment = NodeEnrollment(db)
    channel_service = ChannelService(
        auth, registry, graphs.data_key, tls=bool(config.tls_cert), node_of=enrollment.node_of
    )
    channel_service.guard(COMMANDS, relay.may_open)
    graphs.channels = channel_service
    gateway = AgentGateway(
        db,
        registry,
        experiments,
        relay,
        graphs,
        channel_service,
        enrollment,
        ExecutorFlagCalls(flags, experiments, registry, config.max_wait),
        config.heartbeat_interval,
        config.heartbeat_timeout,
        lost_timeout=config.lost_timeout,
    )
    graph_clients = GraphGateway(auth, graphs, records)
    svc = Services(
        config,
        db,
        auth,
        registry,
        flags,
        experiments,
        gateway,
        relay,
        graphs,
        graph_clients,
        metrics,
        live=LiveHub(db, registry, experiments, flags, relay),
        records=records,
        channel_service=channel_service,
    )
    metrics.watch(svc)
    return svc


def create_app(
    config: ControllerConfig, on_ready: Callable[[Services], None] | None = None
) -> FastAPI:
    """The app; services are built at startup so the database is opened in its loop.

    ``on_ready`` runs once the services are up (the listening socket is bound
    before, so clients told about it now are queued, not refused).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        taskdump.install()
        svc = await build_services(config)
        app.state.services = svc
        if on_ready is not None:
            on_ready(svc)
        recorder = GraphRecorder(
            svc.db, svc.graphs.marks, svc.experiments.notify, running=svc.graphs.running
        )
        async with asyncio.TaskGroup() as tg:
            background = [
                tg.create_task(svc.gateway.watchdog()),
                tg.create_task(svc.gateway.store_reports()),
                tg.create_task(svc.gateway.registrar.run()),
                tg.create_task(svc.relay.recorder()),
                tg.create_task(svc.graphs.run()),
                tg.create_task(recorder.run()),
                tg.create_task(svc.auth.watch_revocations()),
                tg.create_task(svc.flags.run()),
                tg.create_task(svc.gateway.flag_calls.run()),
                tg.create_task(svc.live.run()),
            ]
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                for link in list(svc.registry.links.values()):
                    link.close()
        # What graph sessions did in their last moments (and how they ended) is kept,
        # and the commands' records (their nodes would send them again otherwise).
        with contextlib.suppress(StoreError):
            await recorder.flush()
            await svc.relay.flush()
        await svc.db.close()

    app = FastAPI(
        title="shoal controller",
        version="0.1.0",
        description="Runs experiments and task graphs on a fleet of nodes.",
        lifespan=lifespan,
        # /docs is served from vendored files (routes_dashboard); FastAPI's own
        # pages load theirs from a CDN, which an offline testbed cannot reach.
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StoreError, _store_fault)
    app.add_middleware(RequestLimits, limits=body_limits(config))
    # Added last, so outermost: an increment it answers skips the rest of the stack.
    app.add_middleware(FlagFastPath)
    # Routes are tried in order and flag operations are the most frequent
    # requests: first (no other route matches their paths).
    app.include_router(routes_flags.router)
    app.include_router(routes_auth.router)
    app.include_router(routes_nodes.router)
    app.include_router(routes_experiments.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_records.router)
    app.include_router(routes_channels.router)
    app.add_api_websocket_route("/api/agents/ws", _agent_ws)
    app.add_api_websocket_route("/api/graph/ws", _graph_ws)
    app.add_api_websocket_route("/api/channels/relay", _channel_relay)
    app.add_api_websocket_route("/api/channels/target/{ticket}", _channel_target)
    mount_netunicorn(app)  # netUnicorn's HTTP API under /netunicorn
    routes_dashboard.mount(app)  # the dashboard at /, /static, /docs
    return app


def body_limits(config: ControllerConfig) -> BodyLimits:
    """Small bodies for logins, large ones only where pipelines and results travel."""
    auth = ("/api/token", "/api/logout", f"{NETUNICORN}/api/v1/token")
    upload = (
        "/api/experiments",
        f"{NETUNICORN}/api/v1/experiment/[^/]+/prepare",
        f"{NETUNICORN}/gateway/[^/]+/api/v1/executor/result/?",
    )
    rules = [(re.compile(re.escape(path)), config.max_body_auth) for path in auth]
    rules += [(re.compile(path), config.max_body_upload) for path in upload]
    return BodyLimits(config.max_body, tuple(rules))


def _store_guard(
    handler: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    """A WebSocket route that closes with 1013 and the reason when the store is away."""

    @functools.wraps(handler)
    async def guarded(websocket: WebSocket, **params: Any) -> None:
        try:
            await handler(websocket, **params)
        except* StoreError as group:
            fault = group.exceptions[0]
            assert isinstance(fault, StoreError)
            faults.failed("serving WebSockets", fault)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                if websocket.client_state == WebSocketState.CONNECTING:
                    # Refusing the handshake would read as 403 (an agent takes
                    # that for a wrong token and stops); a close says "later".
                    await websocket.accept()
                await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason=fault.message[:120])

    return guarded


@_store_guard
async def _agent_ws(websocket: WebSocket) -> None:
    await websocket.app.state.services.gateway.serve(websocket)


@_store_guard
async def _graph_ws(websocket: WebSocket) -> None:
    await websocket.app.state.services.graph_clients.serve(websocket)


@_store_guard
async def _channel_relay(websocket: WebSocket) -> None:
    await websocket.app.state.services.channel_service.relay(websocket)


@_store_guard
async def _channel_target(websocket: WebSocket, ticket: str) -> None:
    await websocket.app.state.services.channel_service.target(websocket, ticket)


async def _store_fault(_request: Request, exc: Exception) -> Response:
    """503 while the store is away or full: the request changed nothing; try again."""
    assert isinstance(exc, StoreError)
    faults.failed("answering API requests", exc)
    return Response(
        content=json.dumps({"detail": exc.message}, ensure_ascii=True),
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": "1"},
    )


async def _validation_error(_request: Request, exc: Exception) -> Response:
    """422 with what was wrong and where, safe for any input.

    FastAPI's own handler echoes the input back and cannot encode text that is
    not valid Unicode (lone surrogates); this one names the field and the
    problem, and escapes everything to ASCII.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    return Response(
        content=json.dumps({"detail": detail}, ensure_ascii=True),
        status_code=422,
        media_type="application/json",
    )
