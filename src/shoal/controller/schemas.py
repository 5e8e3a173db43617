"""Request bodies and path parameters of the REST API (validated by FastAPI; errors become 422).

Values that reach the store are limited to what every backend stores: no NUL
characters (PostgreSQL text cannot hold them), integers that fit the store's
32-bit ``Integer`` columns, strings no longer than their columns, and text that
is Unicode (see ``unicode_body``).
"""

from __future__ import annotations

import json
from typing import Annotated

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


class PrepareIn(_Strict):
    name: StrictStr = Field(min_length=1, max_length=200)
    deployments: list[DeploymentIn]
    kind: Text = Field(default="pipelines", max_length=32)
    deployment_context: dict[str, dict[str, StrictStr]] | None = None


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


async def unicode_body(request: Request) -> None:
    """Refuse a JSON body with a lone UTF-16 surrogate (a router dependency).

    JSON can spell one (``"\\ud800"``) and Python decodes it into a string that
    cannot be encoded again: not by the store, not for an agent, and not even
    in FastAPI's own 422 answer, which echoes the input. So it is refused here,
    before the body is validated, with a message that does not echo it.
    """
    body = await request.body()
    if b"\\u" not in body:
        return
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: FastAPI answers that itself
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise bad_request(
                    "the JSON body has a lone UTF-16 surrogate (a \\ud800-\\udfff escape"
                    " that is not part of a pair); strings must be Unicode text"
                ) from None
