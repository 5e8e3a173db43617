"""Request bodies and path parameters of the REST API (validated by FastAPI; errors become 422).

Values that reach the store are limited to what every backend stores: no NUL
characters (PostgreSQL text cannot hold them), integers that fit the store's
32-bit ``Integer`` columns, strings no longer than their columns, and text that
is Unicode (see ``clean_input``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr

from shoal.controller.errors import bad_request

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
NO_NUL = "^[^\\x00]*$"  # as a JSON-schema pattern, for the OpenAPI schema


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    return value


#: A string the store can hold: no NUL characters.
Text = Annotated[StrictStr, AfterValidator(no_nul), Field(json_schema_extra={"pattern": NO_NUL})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Strict):
    login: Text = Field(min_length=1, max_length=128)
    password: StrictStr = Field(max_length=1024)


class DeploymentIn(_Strict):
    node: Text = Field(min_length=1, max_length=255)
    pipeline: StrictStr = Field(description="the cloudpickled Pipeline, base64")
    requirements: list[Text] = []
    environment: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="variables set in the deployment's executor (not SHOAL_*: shoal's own)",
    )


class PrepareIn(_Strict):
    name: StrictStr = Field(min_length=1, max_length=200)
    deployments: list[DeploymentIn]
    kind: Text = Field(default="pipelines", max_length=32)
    deployment_context: dict[str, dict[str, StrictStr]] | None = None
    reproduction: dict[str, Any] | None = Field(
        default=None, description="what is needed to run it again (shoal.client.reproduction)"
    )


class StartIn(_Strict):
    execution_context: dict[str, dict[str, StrictStr]] | None = None


class CancelExecutorsIn(_Strict):
    executors: list[StrictStr]


class FlagIn(_Strict):
    text_value: Text | None = None
    int_value: StrictInt | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)


class FlagWaitIn(FlagIn):
    timeout: float = Field(default=30.0, ge=0, le=3600)
    after: int = Field(
        default=0,
        ge=0,
        description="the last version the caller saw; any later value equal to the target matches",
    )


# --- path parameters -------------------------------------------------------

ExperimentName = Annotated[str, Path(json_schema_extra={"pattern": NO_NUL}), AfterValidator(no_nul)]
FlagName = Annotated[
    str, Path(max_length=255, json_schema_extra={"pattern": NO_NUL}), AfterValidator(no_nul)
]


async def clean_input(request: Request) -> None:
    """Refuse what no store column or agent message can hold, before validation echoes it.

    A router dependency: NUL characters (PostgreSQL text cannot hold them) in
    the path, query or JSON body; lone UTF-16 surrogates (``"\\ud800"`` decodes
    to a string that cannot be encoded again, not by the store, not for an
    agent, not even in an error answer); and NaN or infinities, which are not
    JSON for the store. The message never echoes the bad text.
    """
    for value in (*request.path_params.values(), *request.query_params.values()):
        if "\0" in value:
            raise bad_request("the path and query may not contain NUL characters")
    if "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()
    # Each of these can only be spelled with an escape or a bare word.
    if b"\\u" not in body and b"NaN" not in body and b"Infinity" not in body:
        return
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except ValueError:
        return  # not JSON: FastAPI answers that itself
    except RecursionError:
        raise bad_request("the JSON body is nested too deeply") from None
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\0" in item:
                raise bad_request("strings in the JSON body may not contain NUL characters")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise bad_request(
                    "the JSON body has a lone UTF-16 surrogate; strings must be Unicode text"
                ) from None


def _no_constant(name: str) -> Any:
    raise bad_request(f"{name} is not a JSON number")


#: The OAuth2 password form, for the OpenAPI schema of login routes.
LOGIN_FORM_SCHEMA = {
    "type": "object",
    "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    "required": ["username", "password"],
}
