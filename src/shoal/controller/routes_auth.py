"""Login and health."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from shoal.controller.auth import Principal
from shoal.controller.errors import bad_request, unauthorized
from shoal.controller.schemas import LOGIN_FORM_SCHEMA, Login
from shoal.controller.services import Services, services, user

router = APIRouter(prefix="/api", tags=["auth"])


@router.post(
    "/token",
    summary="Log in with a login and password; returns a bearer token",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": Login.model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": LOGIN_FORM_SCHEMA},
            },
            "required": True,
        }
    },
)
async def token(request: Request, svc: Services = Depends(services)) -> dict:
    # Both JSON and the OAuth2 password form are accepted, so tools that speak
    # the form (Swagger's "Authorize", netUnicorn's client) can log in too.
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/x-www-form-urlencoded") or content_type.startswith(
            "multipart/form-data"
        ):
            form = await request.form()
            body = Login(
                login=str(form.get("username", "")), password=str(form.get("password", ""))
            )
        else:
            body = Login.model_validate(json.loads(await request.body() or b"null"))
    except (ValidationError, ValueError) as exc:
        raise bad_request(f"log in with JSON {{'login': ..., 'password': ...}}: {exc}") from None
    issued = await svc.auth.login(body.login, body.password)
    if issued is None:
        raise unauthorized("wrong login or password")
    return {"access_token": issued, "token_type": "bearer"}


@router.post("/logout", summary="Revoke the bearer token of this call (log out)")
async def logout(caller: Principal = Depends(user), svc: Services = Depends(services)) -> dict:
    await svc.auth.revoke(caller.digest)
    return {"logged_out": caller.login}


@router.get("/health", summary="Is the controller up (and is my token good)?")
async def health(caller: Principal = Depends(user), svc: Services = Depends(services)) -> dict:
    online = sum(1 for n in svc.registry.nodes.values() if n.online)
    return {"status": "ok", "user": caller.login, "nodes_online": online}
