"""netUnicorn's JSON shapes: what its client and executor send, and what they expect back.

The shapes follow ``netunicorn-base`` (``Experiment.from_json``,
``ExperimentExecutionInformation.from_json``, ``Nodes.dispatch_and_deserialize``):
whatever is built here must deserialise there. Models accept unknown keys
(``extra="allow"``) so a newer client's additions pass through to the status it
reads back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

# netunicorn.base.experiment.ExperimentStatus
UNKNOWN, PREPARING, READY, RUNNING, FINISHED = 0, 1, 2, 3, 4
STATUS = {
    "UNKNOWN": UNKNOWN,
    "PREPARING": PREPARING,
    "READY": READY,
    "RUNNING": RUNNING,
    "FINISHED": FINISHED,
    # netUnicorn has no failed or cancelled experiments: they are finished, and
    # what went wrong is in the deployments' errors.
    "FAILED": FINISHED,
    "CANCELLED": FINISHED,
}

# netunicorn.base.types.ExecutorState
EXECUTING, REPORTING, DONE = 1, 2, 3

# netunicorn.base.architecture.Architecture, in netUnicorn's spelling
ARCHITECTURES = {"linux/amd64", "linux/arm64", "win/amd64", "win/arm64"}

MAX_KEEP_ALIVE_MINUTES = 7 * 24 * 60
INT32 = 2**31  # flags' int_value is a 32-bit column in the store

# Path and query values that reach the store: as long as its columns allow.
Name = Annotated[str, Path(min_length=1, max_length=200)]
FlagName = Annotated[str, Path(min_length=1, max_length=255)]
ExecutorId = Annotated[str, Query(min_length=1, max_length=64)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class NodeIn(_Open):
    name: StrictStr = Field(min_length=1, max_length=255)
    properties: dict[str, Any] = {}
    additional_properties: dict[str, Any] = {}
    architecture: StrictStr = "unknown"


class RuntimeContextIn(_Open):
    # JSON object keys are strings: netUnicorn's {int: int} arrives as {"80": 8080}.
    ports_mapping: dict[str, StrictInt] = {}
    environment_variables: dict[StrictStr, StrictStr] = {}
    network: StrictStr | None = None
    additional_arguments: list[StrictStr] = []


class EnvironmentDefinitionIn(_Open):
    commands: list[StrictStr] = []
    runtime_context: RuntimeContextIn = Field(default_factory=RuntimeContextIn)
    image: StrictStr | None = None


class NetunicornDeploymentIn(_Open):
    node: NodeIn
    execution_graph: StrictStr = Field(description="the cloudpickled execution graph, base64")
    environment_definition: EnvironmentDefinitionIn
    environment_definition_type: Literal["DockerImage", "ShellExecution"]
    keep_alive_timeout_minutes: StrictInt | float = Field(
        default=10, gt=0, le=MAX_KEEP_ALIVE_MINUTES
    )
    cleanup: StrictBool = True
    prepared: StrictBool = False
    executor_id: StrictStr = ""
    error: StrictStr | None = None


class ExperimentIn(_Open):
    deployment_map: list[NetunicornDeploymentIn] = Field(min_length=1, max_length=10_000)
    deployment_context: dict[StrictStr, dict[StrictStr, StrictStr]] | None = None


class FlagValuesIn(_Open):
    text_value: StrictStr | None = None
    int_value: StrictInt | None = Field(default=None, ge=-INT32, lt=INT32)


class ExecutorsCancelIn(_Open):
    executors: list[StrictStr] = Field(max_length=10_000)
    cancellation_context: dict[StrictStr, dict[StrictStr, StrictStr]] | None = None


class ExecutorResultIn(_Open):
    executor_id: StrictStr = Field(min_length=1, max_length=64)
    results: StrictStr = Field(description="base64 of the executor's pickled report")
    state: StrictInt = Field(ge=0, le=DONE)


# --------------------------------------------------------------- what goes out


def architecture(shoal_architecture: str) -> str:
    """A shoal agent's architecture in netUnicorn's spelling ("unknown" if it has none)."""
    return shoal_architecture if shoal_architecture in ARCHITECTURES else "unknown"


def node(name: str, properties: dict[str, Any], arch: str, cpus: int) -> dict[str, Any]:
    """A ``NodeRepresentation``."""
    return {
        "name": name,
        "properties": dict(properties),
        "additional_properties": {"cpus": cpus},
        "architecture": architecture(arch),
    }


def node_pool(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``NodesRepresentation`` of a ``CountableNodePool``."""
    return {
        "node_pool_type": "CountableNodePool",
        "node_pool_data": nodes,
        "node_pool_metadata": None,
    }


def flag_values(text: str | None, number: int | None) -> dict[str, Any]:
    """netUnicorn's ``FlagValues``: its ``int_value`` is an int that defaults to 0."""
    return {"text_value": text, "int_value": 0 if number is None else number}
