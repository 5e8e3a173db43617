"""Flags, for users (by experiment name) and for executors (their own experiment)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from shoal.controller.auth import Principal
from shoal.controller.errors import conflict, not_found
from shoal.controller.flags import FlagRangeError, Values
from shoal.controller.schemas import (
    ExperimentName,
    FlagIn,
    FlagName,
    FlagWaitIn,
    unicode_body,
)
from shoal.controller.services import Services, executor, services, user

router = APIRouter(prefix="/api", tags=["flags"], dependencies=[Depends(unicode_body)])


def _out(state: tuple[Values | None, int]) -> dict:
    values, version = state
    text, number = values if values is not None else (None, None)
    return {"text_value": text, "int_value": number, "version": version}


async def _get(svc: Services, experiment_id: str, flag: str) -> dict:
    state = await svc.flags.get(experiment_id, flag)
    if state[0] is None:
        raise not_found(f"flag {flag!r} is not set")
    return _out(state)


async def _add(svc: Services, experiment_id: str, flag: str, delta: int) -> dict:
    try:
        return _out(await svc.flags.add(experiment_id, flag, delta))
    except FlagRangeError as exc:
        raise conflict(str(exc)) from None


async def _wait(svc: Services, experiment_id: str, flag: str, body: FlagWaitIn) -> dict:
    target = (body.text_value, body.int_value)
    timeout = min(body.timeout, svc.config.max_wait)
    got = await svc.flags.wait(experiment_id, flag, target, body.after, timeout)
    state = got if got is not None else await svc.flags.get(experiment_id, flag)
    return {"matched": got is not None, **_out(state)}


async def _user_experiment(svc: Services, caller: Principal, name: str) -> str:
    return (await svc.experiments.find(caller, name))["id"]


# --- users ---------------------------------------------------------------


@router.get("/experiments/{name}/flags", summary="All flags of an experiment")
async def list_flags(
    name: ExperimentName, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict[str, dict]:
    exp = await _user_experiment(svc, caller, name)
    flags = await svc.flags.list(exp)
    return {k: {"text_value": v[0], "int_value": v[1]} for k, v in flags.items()}


@router.get("/experiments/{name}/flags/{flag}", summary="Get a flag")
async def get_flag(
    name: ExperimentName,
    flag: FlagName,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    return await _get(svc, await _user_experiment(svc, caller, name), flag)


@router.put("/experiments/{name}/flags/{flag}", summary="Set a flag")
async def set_flag(
    name: ExperimentName,
    flag: FlagName,
    body: FlagIn,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    exp = await _user_experiment(svc, caller, name)
    return _out(await svc.flags.set(exp, flag, (body.text_value, body.int_value)))


@router.post("/experiments/{name}/flags/{flag}/increment", summary="Atomically add 1")
async def increment(
    name: ExperimentName,
    flag: FlagName,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    return await _add(svc, await _user_experiment(svc, caller, name), flag, 1)


@router.post("/experiments/{name}/flags/{flag}/decrement", summary="Atomically subtract 1")
async def decrement(
    name: ExperimentName,
    flag: FlagName,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    return await _add(svc, await _user_experiment(svc, caller, name), flag, -1)


@router.post("/experiments/{name}/flags/{flag}/wait", summary="Hold until the flag equals")
async def wait_flag(
    name: ExperimentName,
    flag: FlagName,
    body: FlagWaitIn,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    return await _wait(svc, await _user_experiment(svc, caller, name), flag, body)


# --- executors -----------------------------------------------------------


def _scope(caller: Principal) -> str:
    assert caller.experiment_id is not None  # guaranteed by the executor dependency
    return caller.experiment_id


@router.get("/executor/flags/{flag}", summary="Get a flag of my experiment")
async def executor_get(
    flag: FlagName, caller: Principal = Depends(executor), svc: Services = Depends(services)
) -> dict:
    return await _get(svc, _scope(caller), flag)


@router.put("/executor/flags/{flag}", summary="Set a flag of my experiment")
async def executor_set(
    flag: FlagName,
    body: FlagIn,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
) -> dict:
    return _out(await svc.flags.set(_scope(caller), flag, (body.text_value, body.int_value)))


@router.post("/executor/flags/{flag}/increment", summary="Atomically add 1")
async def executor_increment(
    flag: FlagName, caller: Principal = Depends(executor), svc: Services = Depends(services)
) -> dict:
    return await _add(svc, _scope(caller), flag, 1)


@router.post("/executor/flags/{flag}/decrement", summary="Atomically subtract 1")
async def executor_decrement(
    flag: FlagName, caller: Principal = Depends(executor), svc: Services = Depends(services)
) -> dict:
    return await _add(svc, _scope(caller), flag, -1)


@router.post("/executor/flags/{flag}/wait", summary="Hold until the flag equals")
async def executor_wait(
    flag: FlagName,
    body: FlagWaitIn,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
) -> dict:
    return await _wait(svc, _scope(caller), flag, body)
