"""Experiments: which pipeline runs on which node, and what came of it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Self, overload

from shoal.model.node import Node
from shoal.model.pipeline import Pipeline
from shoal.model.result import Result


class ExperimentStatus(Enum):
    """Lifecycle state of an experiment."""

    UNKNOWN = 0
    PREPARING = 1
    READY = 2
    RUNNING = 3
    FINISHED = 4
    FAILED = 5
    CANCELLED = 6

    @property
    def is_terminal(self) -> bool:
        """True once the experiment can no longer change state."""
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {ExperimentStatus.FINISHED, ExperimentStatus.FAILED, ExperimentStatus.CANCELLED}
)

#: Deployment states from which a deployment never moves again.
FINAL_DEPLOYMENT_STATES = frozenset({"finished", "failed", "cancelled", "lost"})
#: Final deployment states that mean its work did not get done.
UNSUCCESSFUL_DEPLOYMENT_STATES = frozenset({"failed", "lost"})


def settle_status(status: str, deployments: Iterable[tuple[str, str]]) -> tuple[str, str | None]:
    """The status an experiment must have, given its deployments' states.

    ``status`` is the experiment's current status (an :class:`ExperimentStatus`
    name), ``deployments`` its ``(node, state)`` pairs. Returns the status it
    must move to (possibly the same) and, for FAILED, the error to show.
    The one rule, used for every experiment with deployments:

    - a final status (FINISHED, FAILED, CANCELLED) never changes;
    - once every deployment is final, the experiment is final too, whatever it
      was (PREPARING, READY or RUNNING):

      - FAILED if any deployment failed or was lost; the error counts them
        ("1 of 2 deployments failed or were lost: a lost"). A run whose work
        was lost never shows as FINISHED;
      - CANCELLED if every deployment was cancelled;
      - FINISHED otherwise (every deployment finished; some may have been
        cancelled on purpose). A pipeline whose own tasks returned failures
        still finished: those failures are in its results;
    - PREPARING becomes READY once no deployment is still preparing and at
      least one is prepared;
    - otherwise the status stays.
    """
    if status in ("FINISHED", "FAILED", "CANCELLED"):
        return status, None
    pairs = list(deployments)
    states = [state for _, state in pairs]
    if pairs and all(state in FINAL_DEPLOYMENT_STATES for state in states):
        bad = [(node, state) for node, state in pairs if state in UNSUCCESSFUL_DEPLOYMENT_STATES]
        if bad:
            which = ", ".join(f"{node} {state}" for node, state in bad)
            return "FAILED", f"{len(bad)} of {len(pairs)} deployments failed or were lost: {which}"
        if all(state == "cancelled" for state in states):
            return "CANCELLED", None
        return "FINISHED", None
    if status == "PREPARING" and "preparing" not in states and "prepared" in states:
        return "READY", None
    return status, None


@dataclass(repr=False)
class Deployment:
    """One pipeline assigned to one node, plus its preparation state."""

    node: Node
    pipeline: Pipeline | None = None
    executor_id: str = ""
    prepared: bool = False
    error: str | None = None
    state: str = ""

    def __repr__(self) -> str:
        return (
            f"Deployment: Node={self.node}, executor_id={self.executor_id}, "
            f"prepared={self.prepared}"
        )


def _as_node(item: object) -> Node:
    if isinstance(item, Node):
        return item
    if isinstance(item, str):
        return Node(item)
    raise TypeError(f"expected a Node or a node name, got {item!r} of type {type(item).__name__}")


class Experiment:
    """A set of deployments: pipelines mapped onto nodes."""

    def __init__(self) -> None:
        self.deployment_map: list[Deployment] = []

    def map(self, pipeline: Pipeline, nodes: Node | str | Iterable[Node | str]) -> Self:
        """Deploy ``pipeline`` on every node in ``nodes`` (a node, a name, or many)."""
        if not isinstance(pipeline, Pipeline):
            raise TypeError(
                f"map() expects a Pipeline, got {pipeline!r} of type {type(pipeline).__name__}"
            )
        if isinstance(nodes, Node | str):
            targets = [_as_node(nodes)]
        else:
            # convert everything first so a bad element leaves the experiment untouched
            targets = [_as_node(item) for item in nodes]
        self.deployment_map.extend(Deployment(node, pipeline) for node in targets)
        return self

    def append(self, node: Node | str, pipeline: Pipeline) -> Self:
        """Deploy ``pipeline`` on a single ``node``."""
        return self.map(pipeline, _as_node(node))

    def __iter__(self) -> Iterator[Deployment]:
        return iter(self.deployment_map)

    def __len__(self) -> int:
        return len(self.deployment_map)

    @overload
    def __getitem__(self, index: int) -> Deployment: ...

    @overload
    def __getitem__(self, index: slice) -> list[Deployment]: ...

    def __getitem__(self, index: int | slice) -> Deployment | list[Deployment]:
        return self.deployment_map[index]

    def __repr__(self) -> str:
        return "\n".join(f" - {deployment!r}" for deployment in self.deployment_map)


@dataclass(repr=False)
class DeploymentExecutionResult:
    """The outcome of one deployment: per-task results, or an error."""

    node: Node
    result: Result | None
    error: str | None = None
    state: str = ""

    def __repr__(self) -> str:
        lines = ["DeploymentExecutionResult:", f"  Node: {self.node}"]
        if self.result is None:
            lines.append("  Result: None")
        else:
            lines.append(f"  Result: {type(self.result)}")
            inner = self.result._inner_value
            if isinstance(inner, dict):
                lines.extend(f"    {key}: {value}" for key, value in inner.items())
            else:
                lines.append(f"    {inner}")
        if self.error:
            lines.append(f"  Error: {self.error}")
        if self.state and self.state != "finished":
            lines.append(f"  State: {self.state}")
        return "\n".join(lines)


@dataclass(repr=False)
class ExperimentExecutionInformation:
    """Status of an experiment together with its deployments and results."""

    status: ExperimentStatus
    experiment: Experiment | None
    execution_result: list[DeploymentExecutionResult] | None

    def __repr__(self) -> str:
        return (
            "ExperimentExecutionInformation:\n"
            f"status: {self.status}\n"
            f"experiment: \n{self.experiment!r}\n"
            f"execution_result:\n{self.execution_result!r}"
        )
