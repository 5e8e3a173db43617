"""What the client makes of the controller's experiment replies, and what it
sends with an experiment: each deployment's preparation and the run's
reproduction record."""

from __future__ import annotations

import base64
import json
import shlex
import sys
from collections.abc import Iterable
from typing import Any

from shoal.client import serialize
from shoal.client.reproduction import reproduction as make_reproduction
from shoal.model import (
    Deployment,
    DeploymentExecutionResult,
    Experiment,
    ExperimentExecutionInformation,
    ExperimentStatus,
    Failure,
    Node,
    Result,
    ResultWithLogs,
)
from shoal.model.environment import (
    DockerImage,
    EnvironmentDefinition,
    check_environment_variables,
)
from shoal.model.pipeline import Workload


def load_result(d: dict[str, Any]) -> Result | None:
    """A deployment's result from its status reply (None: none yet)."""
    if d.get("result"):
        try:
            loaded = serialize.loads(base64.b64decode(d["result"]))
        except Exception as exc:
            return Failure(f"the result could not be loaded here ({exc!r}): {d['result_text']}")
        if isinstance(loaded, Result):
            return loaded
    if d["state"] in ("failed", "cancelled", "lost"):
        return Failure(d.get("error") or d["state"])
    return None


def execution_information(data: dict[str, Any]) -> ExperimentExecutionInformation:
    """netUnicorn's view of an experiment from the controller's status reply."""
    status = ExperimentStatus[data["status"]]
    experiment = Experiment()
    results = []
    for d in data["deployments"]:
        node = Node.from_dict(d["node"])
        experiment.deployment_map.append(
            Deployment(
                node,
                None,
                executor_id=d["executor_id"],
                prepared=d["prepared"],
                error=d["error"],
                state=d["state"],
            )
        )
        loaded = load_result(d)
        # netUnicorn pairs a result with the deployment's log lines. The status
        # reply carries no log lines (get_logs() has them, for the experiment):
        # rather than a request per deployment for every status, the list is empty.
        outcome = None if loaded is None else ResultWithLogs(loaded, [])
        results.append(DeploymentExecutionResult(node, outcome, error=d["error"], state=d["state"]))
    started = status not in (
        ExperimentStatus.UNKNOWN,
        ExperimentStatus.PREPARING,
        ExperimentStatus.READY,
    )
    return ExperimentExecutionInformation(status, experiment, results if started else None)


def deployment_preparation(
    where: str, deployment: Deployment, pipeline: Workload
) -> tuple[list[str], dict[str, str]]:
    """What a node runs before a deployment's pipeline (its environment's
    commands, then the tasks' requirements not among them) and the variables
    its executor gets."""
    environment = deployment.environment_definition
    if environment is None:
        environment = pipeline.environment_definition
    if not isinstance(environment, EnvironmentDefinition):
        raise TypeError(
            f"{where}: environment_definition must be a ShellExecution or a DockerImage, "
            f"got {environment!r}"
        )
    if isinstance(environment, DockerImage) and environment.image:
        # shoal's executor is a Python process on the node, not a container: the
        # deployment must fail, visibly, rather than run outside the image.
        # A requirement that fails does that at prepare, for this node alone.
        # No single quotes in it, so the command in the error reads as the message.
        message = (
            f"DockerImage(image={json.dumps(environment.image)}) cannot run on shoal: "
            "its pipelines run in a Python executor on the node, not in a container. "
            "Use ShellExecution or DockerImage() without an image (the commands run on "
            "the node), or run the image with the netUnicorn client through the "
            "/netunicorn endpoint of the controller."
        )
        return [f"echo {shlex.quote(message)} >&2; exit 1"], {}
    context = environment.runtime_context
    if context.additional_arguments:
        raise ValueError(
            f"{where}: runtime_context.additional_arguments {context.additional_arguments!r} "
            "have no runtime to go to on shoal"
        )
    variables = dict(context.environment_variables)
    check_environment_variables(where, variables)
    commands = list(environment.commands)
    known = set(commands)
    commands.extend(req for req in pipeline.requirements() if req not in known)
    return commands, variables


def pipelines_reproduction(
    plan: list[tuple[Deployment, Workload, list[str]]], shipped: Iterable[str]
) -> dict[str, Any]:
    """Code hash over the shipped pipelines, their tasks' own source, the mapping."""
    modules = {}
    mapping = []
    for deployment, pipeline, requirements in plan:
        for task in pipeline.tasks:
            module = sys.modules.get(type(task).__module__)
            if module is not None and not serialize._is_installed(module):
                modules[module.__name__] = module
        mapping.append(
            {
                "node": deployment.node.name,
                "pipeline": getattr(pipeline, "name", None),
                "tasks": [getattr(t, "name", type(t).__name__) for t in pipeline.tasks],
                "requirements": requirements,
            }
        )
    code = "".join(sorted(shipped)).encode()
    return make_reproduction({"deployments": mapping}, code=code, shipped=modules.values())
