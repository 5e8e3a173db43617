"""Flags, for users (by experiment name) and for executors (their own experiment).

The same five operations serve both callers; only how the experiment is found
differs, so each is registered twice with a different scope dependency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request

from shoal.controller.auth import Principal
from shoal.controller.errors import conflict, not_found
from shoal.controller.flags import FlagRangeError, Values
from shoal.controller.schemas import (
    ExperimentName,
    FlagIn,
    FlagName,
    FlagWaitIn,
    clean_input,
)
from shoal.controller.services import Services, executor, user

router = APIRouter(prefix="/api", tags=["flags"], dependencies=[Depends(clean_input)])

Scope = Callable[..., Awaitable[str]]


async def services(request: Request) -> Services:
    """The controller's services, as a coroutine: FastAPI runs a plain function
    dependency in its thread pool, a thread hop on every flag operation."""
    return request.app.state.services


def _out(state: tuple[Values | None, int]) -> dict:
    values, version = state
    text, number = values if values is not None else (None, None)
    return {"text_value": text, "int_value": number, "version": version}


async def user_scope(
    name: ExperimentName, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> str:
    """A user reaches the flags of their own experiments, by name.

    Which experiment a name is comes from the store once, then from memory: the
    lookup is by the caller's own user id, as in the store.
    """
    epoch = svc.flags.names_epoch(svc.auth.epoch)
    known = svc.flags.experiment_named(caller.user_id, name, epoch)
    if known is not None:
        return known
    found = (await svc.experiments.find(caller, name))["id"]
    svc.flags.remember_name(caller.user_id, name, found, epoch)
    return found


async def executor_scope(caller: Principal = Depends(executor)) -> str:
    """An executor reaches the flags of the one experiment its token was made for."""
    assert caller.experiment_id is not None  # guaranteed by the executor dependency
    return caller.experiment_id


@router.get("/experiments/{name}/flags", summary="All flags of an experiment")
async def list_flags(
    experiment: str = Depends(user_scope), svc: Services = Depends(services)
) -> dict[str, dict]:
    flags = await svc.flags.list(experiment)
    return {k: {"text_value": v[0], "int_value": v[1]} for k, v in flags.items()}


def _adder(scope: Scope, delta: int, name: str) -> Callable[..., Awaitable[dict]]:
    """An atomic add of ``delta``, fixed per route (never a parameter a caller sets)."""

    async def add(
        flag: FlagName, experiment: str = Depends(scope), svc: Services = Depends(services)
    ) -> dict:
        try:
            return _out(await svc.flags.add(experiment, flag, delta))
        except FlagRangeError as exc:
            raise conflict(str(exc)) from None

    add.__name__ = name
    return add


def _register(prefix: str, scope: Scope, whose: str) -> None:
    @router.get(f"{prefix}/{{flag}}", summary=f"Get a flag of {whose}")
    async def get_flag(
        flag: FlagName, experiment: str = Depends(scope), svc: Services = Depends(services)
    ) -> dict:
        state = await svc.flags.get(experiment, flag)
        if state[0] is None:
            raise not_found(f"flag {flag!r} is not set")
        return _out(state)

    @router.put(f"{prefix}/{{flag}}", summary=f"Set a flag of {whose}")
    async def set_flag(
        flag: FlagName,
        body: FlagIn,
        experiment: str = Depends(scope),
        svc: Services = Depends(services),
    ) -> dict:
        return _out(await svc.flags.set(experiment, flag, (body.text_value, body.int_value)))

    for verb, delta in (("increment", 1), ("decrement", -1)):
        router.add_api_route(
            f"{prefix}/{{flag}}/{verb}",
            _adder(scope, delta, f"{verb}_flag"),
            methods=["POST"],
            summary=f"Atomically {'add' if delta > 0 else 'subtract'} 1 ({whose})",
        )

    @router.post(f"{prefix}/{{flag}}/wait", summary=f"Hold until a flag of {whose} equals")
    async def wait_flag(
        flag: FlagName,
        body: FlagWaitIn,
        experiment: str = Depends(scope),
        svc: Services = Depends(services),
    ) -> dict:
        target = (body.text_value, body.int_value)
        timeout = min(body.timeout, svc.config.max_wait)
        got = await svc.flags.wait(experiment, flag, target, body.after, timeout)
        state = got if got is not None else await svc.flags.get(experiment, flag)
        return {"matched": got is not None, **_out(state)}


_register("/experiments/{name}/flags", user_scope, "my experiment")
_register("/executor/flags", executor_scope, "the executor's experiment")
