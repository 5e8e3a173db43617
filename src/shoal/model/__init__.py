"""Pure data classes describing nodes, pipelines, experiments and results."""

from shoal.model.architecture import Architecture
from shoal.model.environment import (
    BuildContext,
    DockerImage,
    EnvironmentDefinition,
    RuntimeContext,
    ShellExecution,
)
from shoal.model.execution_graph import CyclePipeline, ExecutionGraph, ExecutionGraphError
from shoal.model.experiment import (
    Deployment,
    DeploymentExecutionResult,
    Experiment,
    ExperimentExecutionInformation,
    ExperimentStatus,
)
from shoal.model.flags import FlagValues
from shoal.model.node import Node, Nodes
from shoal.model.pipeline import Pipeline, Task, TaskDispatcher, Workload
from shoal.model.result import (
    Failure,
    Result,
    ResultWithLogs,
    Success,
    UnwrapFailedError,
    is_successful,
)

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
    "Workload",
    "is_successful",
]
