"""Flags, for users (by experiment name) and for executors (their own experiment)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from shoal.controller.auth import Principal
from shoal.controller.errors import not_found
from shoal.controller.flags import Values
from shoal.controller.schemas import FlagIn, FlagWaitIn
from shoal.controller.services import Services, executor, services, user

router = APIRouter(prefix="/api", tags=["flags"])


def _out(state: tuple[Values | None, int]) -> dict:
    values, version = state
    text, number = values if values is not None else (None, None)
    return {"text_value": text, "int_value": number, "version": version}


async def _get(svc: Services, experiment_id: str, flag: str) -> dict:
    state = await svc.flags.get(experiment_id, flag)
    if state[0] is None:
        raise not_found(f"flag {flag!r} is not set")
    return _out(state)


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
    name: str, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict[str, dict]:
    exp = await _user_experiment(svc, caller, name)
    flags = await svc.flags.list(exp)
    return {k: {"text_value": v[0], "int_value": v[1]} for k, v in flags.items()}


@router.get("/experiments/{name}/flags/{flag}", summary="Get a flag")
async def get_flag(
    name: str, flag: str, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    return await _get(svc, await _user_experiment(svc, caller, name), flag)


@router.put("/experiments/{name}/flags/{flag}", summary="Set a flag")
async def set_flag(
    name: str,
    flag: str,
    body: FlagIn,
    caller: Principal = Depends(user),
    svc: Services = Depends(services),
) -> dict:
    exp = await _user_experiment(svc, caller, name)
    return _out(await svc.flags.set(exp, flag, (body.text_value, body.int_value)))


@router.post("/experiments/{name}/flags/{flag}/increment", summary="Atomically add 1")
async def increment(
    name: str, flag: str, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    return _out(await svc.flags.add(await _user_experiment(svc, caller, name), flag, 1))


@router.post("/experiments/{name}/flags/{flag}/decrement", summary="Atomically subtract 1")
async def decrement(
    name: str, flag: str, caller: Principal = Depends(user), svc: Services = Depends(services)
) -> dict:
    return _out(await svc.flags.add(await _user_experiment(svc, caller, name), flag, -1))


@router.post("/experiments/{name}/flags/{flag}/wait", summary="Hold until the flag equals")
async def wait_flag(
    name: str,
    flag: str,
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
    flag: str, caller: Principal = Depends(executor), svc: Services = Depends(services)
) -> dict:
    return await _get(svc, _scope(caller), flag)


@router.put("/executor/flags/{flag}", summary="Set a flag of my experiment")
async def executor_set(
    flag: str,
    body: FlagIn,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
) -> dict:
    return _out(await svc.flags.set(_scope(caller), flag, (body.text_value, body.int_value)))


@router.post("/executor/flags/{flag}/increment", summary="Atomically add 1")
async def executor_increment(
    flag: str, caller: Principal = Depends(executor), svc: Services = Depends(services)
) -> dict:
    return _out(await svc.flags.add(_scope(caller), flag, 1))


@router.post("/executor/flags/{flag}/decrement", summary="Atomically subtract 1")
async def executor_decrement(
    flag: str, caller: Principal = Depends(executor), svc: Services = Depends(services)
) -> dict:
    return _out(await svc.flags.add(_scope(caller), flag, -1))


@router.post("/executor/flags/{flag}/wait", summary="Hold until the flag equals")
async def executor_wait(
    flag: str,
    body: FlagWaitIn,
    caller: Principal = Depends(executor),
    svc: Services = Depends(services),
) -> dict:
    return await _wait(svc, _scope(caller), flag, body)
