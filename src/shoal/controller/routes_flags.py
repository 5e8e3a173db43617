"""Flags, for users (by experiment name) and for executors (their own experiment).

The same five operations serve both callers; only how the experiment is found
differs, so each is registered twice with a different scope dependency.

A flag operation is the controller's most frequent request, so each route has
one dependency (its scope) that checks the input, authenticates the caller and
finds the experiment by calling the project's own checks in turn: FastAPI's
dependency resolution costs tens of microseconds a level, and a chain of eight
of them cost more than the operation. The commonest of all, an increment or
decrement, is mostly answered before these routes by ``flag_fast_path``; what
it cannot answer (every error among them) comes here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request, Response

from shoal.controller.errors import conflict, not_found
from shoal.controller.flag_fast_path import encode, flag_answer
from shoal.controller.flags import FlagRangeError, Values
from shoal.controller.schemas import ExperimentName, FlagIn, FlagName, FlagWaitIn, clean_input
from shoal.controller.services import (
    BEARER_SECURITY,
    Services,
    bearer_credentials,
    executor,
    principal,
    user,
)

router = APIRouter(prefix="/api", tags=["flags"])


@dataclass(frozen=True, slots=True)
class FlagScope:
    """Whose flags a request reaches: the experiment's id, and the services."""

    svc: Services
    experiment: str


Scope = Callable[..., Awaitable[FlagScope]]


async def user_scope(request: Request, name: ExperimentName) -> FlagScope:
    """A user reaches the flags of their own experiments, by name.

    Which experiment a name is comes from the store once, then from memory: the
    lookup is by the caller's own user id, as in the store.
    """
    await clean_input(request)
    caller = await user(await principal(request, bearer_credentials(request)))
    svc: Services = request.app.state.services
    epoch = svc.flags.names_epoch(svc.auth.epoch)
    known = svc.flags.experiment_named(caller.user_id, name, epoch)
    if known is None:
        known = (await svc.experiments.find(caller, name))["id"]
        svc.flags.remember_name(caller.user_id, name, known, epoch)
    return FlagScope(svc, known)


async def executor_scope(request: Request) -> FlagScope:
    """An executor reaches the flags of the one experiment its token was made for."""
    await clean_input(request)
    caller = await executor(await principal(request, bearer_credentials(request)))
    assert caller.experiment_id is not None  # guaranteed by the executor check
    return FlagScope(request.app.state.services, caller.experiment_id)


def _json(state: tuple[Values | None, int]) -> Response:
    """``flag_answer`` as a finished response: FastAPI's validation and encoding of a
    returned dict cost about as much as the operation itself."""
    return Response(encode(flag_answer(state)), media_type="application/json")


def _adder(scope: Scope, delta: int, name: str) -> Callable[..., Awaitable[Response]]:
    """An atomic add of ``delta``, fixed per route (never a parameter a caller sets)."""

    async def add(flag: FlagName, where: FlagScope = Depends(scope)) -> Response:
        try:
            return _json(await where.svc.flags.add(where.experiment, flag, delta))
        except FlagRangeError as exc:
            raise conflict(str(exc)) from None

    add.__name__ = name
    return add


def _register(prefix: str, scope: Scope, whose: str) -> None:
    # The most frequent operations first: routes are tried in order.
    for verb, delta in (("increment", 1), ("decrement", -1)):
        router.add_api_route(
            f"{prefix}/{{flag}}/{verb}",
            _adder(scope, delta, f"{verb}_flag"),
            methods=["POST"],
            summary=f"Atomically {'add' if delta > 0 else 'subtract'} 1 ({whose})",
            responses={200: {"description": "The flag's text and int value and version"}},
            openapi_extra=BEARER_SECURITY,
        )

    @router.get(
        f"{prefix}/{{flag}}", summary=f"Get a flag of {whose}", openapi_extra=BEARER_SECURITY
    )
    async def get_flag(flag: FlagName, where: FlagScope = Depends(scope)) -> Response:
        state = await where.svc.flags.get(where.experiment, flag)
        if state[0] is None:
            raise not_found(f"flag {flag!r} is not set")
        return _json(state)

    @router.put(
        f"{prefix}/{{flag}}", summary=f"Set a flag of {whose}", openapi_extra=BEARER_SECURITY
    )
    async def set_flag(flag: FlagName, body: FlagIn, where: FlagScope = Depends(scope)) -> Response:
        values = (body.text_value, body.int_value)
        return _json(await where.svc.flags.set(where.experiment, flag, values))

    @router.post(
        f"{prefix}/{{flag}}/wait",
        summary=f"Hold until a flag of {whose} equals",
        openapi_extra=BEARER_SECURITY,
    )
    async def wait_flag(
        flag: FlagName, body: FlagWaitIn, where: FlagScope = Depends(scope)
    ) -> dict:
        flags = where.svc.flags
        target = (body.text_value, body.int_value)
        timeout = min(body.timeout, where.svc.config.max_wait)
        got = await flags.wait(where.experiment, flag, target, body.after, timeout)
        state = got if got is not None else await flags.get(where.experiment, flag)
        return {"matched": got is not None, **flag_answer(state)}


_register("/experiments/{name}/flags", user_scope, "my experiment")
_register("/executor/flags", executor_scope, "the executor's experiment")


@router.get(
    "/experiments/{name}/flags",
    summary="All flags of an experiment",
    openapi_extra=BEARER_SECURITY,
)
async def list_flags(scope: FlagScope = Depends(user_scope)) -> dict[str, dict]:
    flags = await scope.svc.flags.list(scope.experiment)
    return {k: {"text_value": v[0], "int_value": v[1]} for k, v in flags.items()}
