"""Pure data classes describing nodes, pipelines, experiments and results."""

from shoal.model.experiment import (
    Deployment,
    DeploymentExecutionResult,
    Experiment,
    ExperimentExecutionInformation,
    ExperimentStatus,
)
from shoal.model.flags import FlagValues
from shoal.model.node import Node, Nodes
from shoal.model.pipeline import Pipeline, Task
from shoal.model.result import Failure, Result, Success, UnwrapFailedError, is_successful

__all__ = [
    "Deployment",
    "DeploymentExecutionResult",
    "Experiment",
    "ExperimentExecutionInformation",
    "ExperimentStatus",
    "Failure",
    "FlagValues",
    "Node",
    "Nodes",
    "Pipeline",
    "Result",
    "Success",
    "Task",
    "UnwrapFailedError",
    "is_successful",
]
