"""Request bodies of the REST API (validated by FastAPI; errors become 422)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Strict):
    login: StrictStr = Field(min_length=1, max_length=128)
    password: StrictStr = Field(max_length=1024)


class DeploymentIn(_Strict):
    node: StrictStr = Field(min_length=1, max_length=255)
    pipeline: StrictStr = Field(description="the cloudpickled Pipeline, base64")
    requirements: list[StrictStr] = []


class PrepareIn(_Strict):
    name: StrictStr = Field(min_length=1, max_length=200)
    deployments: list[DeploymentIn]
    kind: StrictStr = "pipelines"
    deployment_context: dict[str, dict[str, StrictStr]] | None = None


class StartIn(_Strict):
    execution_context: dict[str, dict[str, StrictStr]] | None = None


class CancelExecutorsIn(_Strict):
    executors: list[StrictStr]


class FlagIn(_Strict):
    text_value: StrictStr | None = None
    int_value: StrictInt | None = None


class FlagWaitIn(FlagIn):
    timeout: float = Field(default=30.0, ge=0, le=3600)
    after: int = Field(
        default=0,
        ge=0,
        description="the last version the caller saw; any later value equal to the target matches",
    )
