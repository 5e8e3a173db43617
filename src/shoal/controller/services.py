"""The controller's services, built once per app and reached from the routes."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shoal.controller.agent_gateway import AgentGateway
from shoal.controller.auth import Authenticator, Principal
from shoal.controller.channel_relay import ChannelService
from shoal.controller.commands import CommandRecorder
from shoal.controller.config import ControllerConfig
from shoal.controller.errors import forbidden, unauthorized
from shoal.controller.experiments import ExperimentService
from shoal.controller.flags import FlagService
from shoal.controller.graph_gateway import GraphGateway
from shoal.controller.graph_service import GraphService
from shoal.controller.live import LiveHub
from shoal.controller.metrics import ControllerMetrics
from shoal.controller.records import RecordService
from shoal.controller.registry import NodeRegistry
from shoal.store.database import Database


@dataclass
class Services:
    config: ControllerConfig
    db: Database
    auth: Authenticator
    registry: NodeRegistry
    flags: FlagService
    experiments: ExperimentService
    gateway: AgentGateway
    relay: CommandRecorder
    graphs: GraphService
    graph_clients: GraphGateway
    metrics: ControllerMetrics
    live: LiveHub
    records: RecordService
    channel_service: ChannelService


async def services(request: Request) -> Services:
    """The controller's services (async: FastAPI runs a plain function dependency
    in its thread pool, a thread hop on every request)."""
    return request.app.state.services


bearer = HTTPBearer(auto_error=False, description="a token from POST /api/token")


def bearer_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    """What ``bearer`` gives, read straight from the header: for the hottest routes,
    where each FastAPI dependency level costs tens of microseconds a request."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token)


# Routes that read the header with ``bearer_credentials`` declare the scheme
# themselves, so the OpenAPI document still says they need a token.
BEARER_SECURITY = {"security": [{"HTTPBearer": []}]}


async def principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Principal:
    if credentials is None:
        raise unauthorized()
    found = await request.app.state.services.auth.resolve(credentials.credentials)
    if found is None:
        raise unauthorized("invalid or expired token; log in again at POST /api/token")
    return found


async def user(caller: Principal = Depends(principal)) -> Principal:
    """A person's token (executor tokens reach only their own experiment's flags)."""
    if caller.kind != "user":
        raise forbidden("this call needs a user token, not an executor token")
    return caller


async def executor(caller: Principal = Depends(principal)) -> Principal:
    if caller.kind != "executor" or caller.experiment_id is None:
        raise forbidden("this call needs an executor token")
    return caller
