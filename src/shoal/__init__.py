"""shoal: run distributed experiments and task graphs across a fleet of nodes.

The pipelines front-end lives at the top level::

    from shoal import Experiment, Pipeline, local_cluster
    from shoal.library.basic import ShellCommand

    with local_cluster(nodes=["node-0"]) as client:
        pipeline = Pipeline().then(ShellCommand("uname -a"))
        client.prepare_experiment(Experiment().map(pipeline, client.get_nodes()), "hello")
        client.wait("hello", until="ready")
        client.start_execution("hello")
        print(client.wait("hello"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Names are imported on first use: an agent or executor importing shoal.protocol
# should not pay for the HTTP client and everything else.
_LAZY = {
    "LocalCluster": "shoal.client.local_cluster",
    "local_cluster": "shoal.client.local_cluster",
    "RemoteClient": "shoal.client.remote",
    "RemoteClientException": "shoal.client.remote",
    **{
        name: "shoal.model"
        for name in (
            "Architecture",
            "BuildContext",
            "CyclePipeline",
            "Deployment",
            "DeploymentExecutionResult",
            "DockerImage",
            "EnvironmentDefinition",
            "ExecutionGraph",
            "ExecutionGraphError",
            "Experiment",
            "ExperimentExecutionInformation",
            "ExperimentStatus",
            "Failure",
            "FlagValues",
            "Node",
            "Nodes",
            "Pipeline",
            "Result",
            "ResultWithLogs",
            "RuntimeContext",
            "ShellExecution",
            "Success",
            "Task",
            "TaskDispatcher",
            "UnwrapFailedError",
            "is_successful",
        )
    },
}

__all__ = [
    "Architecture",
    "BuildContext",
    "CyclePipeline",
    "Deployment",
    "DeploymentExecutionResult",
    "DockerImage",
    "EnvironmentDefinition",
    "ExecutionGraph",
    "ExecutionGraphError",
    "Experiment",
    "ExperimentExecutionInformation",
    "ExperimentStatus",
    "Failure",
    "FlagValues",
    "LocalCluster",
    "Node",
    "Nodes",
    "Pipeline",
    "RemoteClient",
    "RemoteClientException",
    "Result",
    "ResultWithLogs",
    "RuntimeContext",
    "ShellExecution",
    "Success",
    "Task",
    "TaskDispatcher",
    "UnwrapFailedError",
    "__version__",
    "is_successful",
    "local_cluster",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from shoal.client.local_cluster import LocalCluster, local_cluster
    from shoal.client.remote import RemoteClient, RemoteClientException
    from shoal.model import (
        Architecture,
        BuildContext,
        CyclePipeline,
        Deployment,
        DeploymentExecutionResult,
        DockerImage,
        EnvironmentDefinition,
        ExecutionGraph,
        ExecutionGraphError,
        Experiment,
        ExperimentExecutionInformation,
        ExperimentStatus,
        Failure,
        FlagValues,
        Node,
        Nodes,
        Pipeline,
        Result,
        ResultWithLogs,
        RuntimeContext,
        ShellExecution,
        Success,
        Task,
        TaskDispatcher,
        UnwrapFailedError,
        is_successful,
    )
