"""netUnicorn's HTTP API, served by the shoal controller under a path prefix.

Two routers, paths and shapes as ``netunicorn-client``, ``netunicorn-executor``
and ``netunicorn-library`` use them:

- the client API, ``{prefix}/api/v1/...``: form login at ``/token`` returning a
  bearer token, ``/verify_token``, ``/health``, ``/nodes``, experiments
  (list, prepare, start, status, cancel, delete), ``/executors/cancel`` and
  flags. ``NETUNICORN_ENDPOINT`` is ``http://host:port{prefix}``.
- the executors' gateway, ``{prefix}/gateway/{token}/api/v1/...``: execution
  graph, results and heartbeats, and the flag calls of the library's flag
  tasks. netUnicorn's executor sends no credentials, so its endpoint carries
  its executor token: it reaches only that experiment.

Users, experiments, flags and nodes are shoal's own: a netUnicorn user is a
shoal user, and ``shoal experiments`` and ``shoal flags NAME`` show what the
netUnicorn client does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Request
from fastapi.responses import PlainTextResponse

from shoal.compat.netunicorn import wire
from shoal.compat.netunicorn.service import NetunicornService
from shoal.controller.auth import Principal
from shoal.controller.errors import bad_request, not_found, unauthorized
from shoal.controller.schemas import LOGIN_FORM_SCHEMA, clean_input
from shoal.controller.services import Services, services, user

PREFIX = "/netunicorn"
MAX_LOGIN, MAX_PASSWORD = 128, 1024
GATEWAY = "/gateway/{token}"

client_router = APIRouter(
    prefix="/api/v1", tags=["netUnicorn"], dependencies=[Depends(clean_input)]
)
gateway_router = APIRouter(
    prefix=GATEWAY + "/api/v1",
    tags=["netUnicorn gateway"],
    dependencies=[Depends(clean_input)],
)
ExperimentId = Annotated[str, Path(min_length=1, max_length=64)]

Context = dict[str, dict[str, str]] | None


def netunicorn(request: Request) -> NetunicornService:
    return request.app.state.netunicorn


async def executor(token: str, request: Request) -> Principal:
    """The executor whose token is in the gateway path."""
    caller = await request.app.state.services.auth.resolve(token)
    if caller is None or caller.kind != "executor" or caller.experiment_id is None:
        raise unauthorized("this gateway endpoint's executor token is not valid")
    return caller


async def _experiment_id(svc: Services, caller: Principal, name: str) -> str:
    return (await svc.experiments.find(caller, name))["id"]


async def _flag(svc: Services, experiment_id: str, flag: str) -> dict[str, Any]:
    values, _ = await svc.flags.get(experiment_id, flag)
    if values is None:
        # netUnicorn's flag tasks read 404 as "not set yet" and keep waiting.
        raise not_found(f"flag {flag!r} is not set")
    return wire.flag_values(*values)


async def _set_flag(
    svc: Services, experiment_id: str, flag: str, body: wire.FlagValuesIn
) -> tuple[Any, int]:
    if body.text_value is None and body.int_value is None:
        raise bad_request("one of text_value or int_value must be given")
    return await svc.flags.set(experiment_id, flag, (body.text_value, body.int_value or 0))


# ------------------------------------------------------------------ the client


_LOGIN_FORM = {
    "requestBody": {
        "content": {"application/x-www-form-urlencoded": {"schema": LOGIN_FORM_SCHEMA}},
        "required": True,
    }
}


@client_router.post(
    "/token",
    summary="Log in (OAuth2 password form); returns a bearer token",
    openapi_extra=_LOGIN_FORM,
)
async def token(request: Request, svc: Services = Depends(services)) -> dict[str, str]:
    # netUnicorn's client posts an urlencoded form; it is parsed here rather
    # than with Starlette's form parser, which needs python-multipart.
    fields: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        try:
            text = (await request.body()).decode("utf-8")
            fields = dict(parse_qsl(text, keep_blank_values=True, max_num_fields=16))
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad_request(f"the login form is not valid: {exc}") from None
    login, password = fields.get("username"), fields.get("password")
    if login is None or password is None:
        raise unauthorized("log in with the form fields username and password")
    if not 0 < len(login) <= MAX_LOGIN or "\0" in login or len(password) > MAX_PASSWORD:
        raise unauthorized("wrong login or password")
    issued = await svc.auth.login(login, password)
    if issued is None:
        raise unauthorized("wrong login or password")
    return {"access_token": issued, "token_type": "bearer"}


@client_router.get("/verify_token", summary="Is my token still good?")
async def verify_token(caller: Principal = Depends(user)) -> dict[str, str]:
    return {"username": caller.login}


@client_router.get("/health", summary="Is the controller up?")
async def health(_: Principal = Depends(user)) -> str:
    return "OK"


@client_router.get("/nodes", summary="The online nodes, as a netUnicorn node pool")
async def nodes(_: Principal = Depends(user), svc: Services = Depends(services)) -> dict[str, Any]:
    online = sorted((n for n in svc.registry.nodes.values() if n.online), key=lambda n: n.name)
    return wire.node_pool([wire.node(n.name, n.properties, n.architecture, n.cpus) for n in online])


@client_router.get("/experiment", summary="My netUnicorn experiments, by name")
async def experiments(
    caller: Principal = Depends(user), nu: NetunicornService = Depends(netunicorn)
) -> dict[str, dict[str, Any]]:
    return await nu.list_experiments(caller)


@client_router.post("/experiment/{name}/prepare", summary="Prepare (idempotent by name)")
async def prepare(
    name: wire.Name,
    body: wire.ExperimentIn,
    caller: Principal = Depends(user),
    nu: NetunicornService = Depends(netunicorn),
) -> str:
    return await nu.prepare(caller, name, body)


@client_router.post("/experiment/{name}/start", summary="Start a READY experiment (idempotent)")
async def start(
    name: wire.Name,
    execution_context: Context = Body(default=None),
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> str:
    return await svc.experiments.start(caller, name)


@client_router.get("/experiment/{name}", summary="Status, deployments and results")
async def status(
    name: wire.Name, caller: Principal = Depends(user), nu: NetunicornService = Depends(netunicorn)
) -> dict[str, Any]:
    return await nu.status(caller, name)


@client_router.post("/experiment/{name}/cancel", summary="Cancel an experiment")
async def cancel(
    name: wire.Name,
    cancellation_context: Context = Body(default=None),
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> str:
    return await svc.experiments.cancel(caller, name)


@client_router.delete("/experiment/{name}", summary="Delete an experiment, freeing its name")
async def delete(
    name: wire.Name, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> str:
    await svc.experiments.delete(caller, name)
    return name


@client_router.post("/executors/cancel", summary="Cancel particular executors")
async def cancel_executors(
    body: wire.ExecutorsCancelIn,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> list[str]:
    return await svc.experiments.cancel_executors(caller, body.executors)


@client_router.get("/experiment/{name}/flag/{flag}", summary="Get a flag")
async def get_flag(
    name: wire.Name,
    flag: wire.FlagName,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return await _flag(svc, await _experiment_id(svc, caller, name), flag)


@client_router.post("/experiment/{name}/flag/{flag}", summary="Set a flag")
async def set_flag(
    name: wire.Name,
    flag: wire.FlagName,
    body: wire.FlagValuesIn,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> None:
    await _set_flag(svc, await _experiment_id(svc, caller, name), flag, body)


# ------------------------------------------------------------- the executors


@gateway_router.get(
    "/executor/execution_graph",
    summary="The executor's execution graph (base64)",
    response_class=PlainTextResponse,
)
async def execution_graph(
    executor_id: wire.ExecutorId,
    caller: Principal = Depends(executor),
    nu: NetunicornService = Depends(netunicorn),
) -> PlainTextResponse:
    graph = await nu.execution_graph(caller, executor_id)
    # The executor base64-decodes the raw body, so it is plain text, not JSON.
    return PlainTextResponse(base64.b64encode(graph).decode("ascii"))


async def _result(
    body: wire.ExecutorResultIn,
    caller: Principal = Depends(executor),
    nu: NetunicornService = Depends(netunicorn),
) -> None:
    await nu.report(caller, body)


# The executor posts its final report to ".../result" and its heartbeats to
# ".../result/": both are served, without a redirect.
gateway_router.add_api_route(
    "/executor/result", _result, methods=["POST"], summary="Results or a heartbeat"
)
gateway_router.add_api_route(
    "/executor/result/",
    _result,
    methods=["POST"],
    summary="Results or a heartbeat (heartbeats use this spelling)",
)


@gateway_router.get("/experiment/{experiment_id}/flag/{flag}", summary="Get a flag")
async def executor_get_flag(
    experiment_id: ExperimentId,
    flag: wire.FlagName,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
    nu: NetunicornService = Depends(netunicorn),
    token: str = Path(),
) -> dict[str, Any]:
    # netUnicorn's flag tasks poll once a second and compare on the executor: an
    # executor is shown the next change it has not seen, so a value another node
    # moved on from within the second (a barrier's "stage 1, 0") is not missed.
    key = (token, flag)
    values, version = await svc.flags.next_after(
        nu.check_scope(caller, experiment_id), flag, nu.flag_seen.get(key, 0)
    )
    if values is None:
        raise not_found(f"flag {flag!r} is not set")  # read as "not set yet": keep waiting
    nu.flag_seen[key] = version
    return wire.flag_values(*values)


@gateway_router.post("/experiment/{experiment_id}/flag/{flag}", summary="Set a flag")
async def executor_set_flag(
    experiment_id: ExperimentId,
    flag: wire.FlagName,
    body: wire.FlagValuesIn,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
    nu: NetunicornService = Depends(netunicorn),
    token: str = Path(),
) -> None:
    _, nu.flag_seen[(token, flag)] = await _set_flag(
        svc, nu.check_scope(caller, experiment_id), flag, body
    )


@gateway_router.post("/experiment/{experiment_id}/flag/{flag}/increment", summary="Atomic +1")
async def executor_increment(
    experiment_id: ExperimentId,
    flag: wire.FlagName,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
    nu: NetunicornService = Depends(netunicorn),
    token: str = Path(),
) -> dict[str, Any]:
    values, nu.flag_seen[(token, flag)] = await svc.flags.add(
        nu.check_scope(caller, experiment_id), flag, 1
    )
    return wire.flag_values(*values)


@gateway_router.post("/experiment/{experiment_id}/flag/{flag}/decrement", summary="Atomic -1")
async def executor_decrement(
    experiment_id: ExperimentId,
    flag: wire.FlagName,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
    nu: NetunicornService = Depends(netunicorn),
    token: str = Path(),
) -> dict[str, Any]:
    values, nu.flag_seen[(token, flag)] = await svc.flags.add(
        nu.check_scope(caller, experiment_id), flag, -1
    )
    return wire.flag_values(*values)


# ------------------------------------------------------------------ mounting


def mount(app: FastAPI, prefix: str = PREFIX) -> None:
    """Serve netUnicorn's API under ``prefix`` and run its keep-alive watchdog."""
    app.include_router(client_router, prefix=prefix)
    app.include_router(gateway_router, prefix=prefix)
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[Any]:
        # Inside the controller's own lifespan: its services exist by now, and
        # requests are served only once this one has yielded too.
        async with outer(app_) as state:
            service = NetunicornService(app_.state.services, prefix + "/gateway")
            await service.load()
            app_.state.netunicorn = service
            async with asyncio.TaskGroup() as tg:
                watchdog = tg.create_task(service.watchdog())
                try:
                    yield state
                finally:
                    watchdog.cancel()

    app.router.lifespan_context = lifespan
