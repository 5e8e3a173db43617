"""Experiments: which pipeline runs on which node, and what came of it."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Self, overload

from shoal.model.environment import EnvironmentDefinition
from shoal.model.node import Node
from shoal.model.pipeline import Workload
from shoal.model.result import Result, ResultWithLogs


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

    @property
    def as_netunicorn(self) -> ExperimentStatus:
        """The status as netUnicorn reports it: it has no FAILED or CANCELLED,
        such runs are FINISHED there."""
        return ExperimentStatus.FINISHED if self.is_terminal else self

    @classmethod
    def from_json(cls, value: int | str) -> ExperimentStatus:
        """The status from its JSON form: netUnicorn's number, or shoal's name."""
        try:
            return cls[value] if isinstance(value, str) else cls(value)
        except (KeyError, ValueError):
            known = ", ".join(f"{s.value} ({s.name})" for s in cls)
            raise ValueError(f"unknown experiment status {value!r}; known: {known}") from None


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
    """One pipeline assigned to one node, plus its preparation state.

    Made with a pipeline, it holds the pipeline as it runs on its node: any
    :class:`~shoal.model.pipeline.TaskDispatcher` is dispatched for the node
    here. ``environment_definition`` is then a copy of the pipeline's, with the
    tasks' requirements added to its ``commands`` (what will run on the node
    before the pipeline); replace or change it to prepare this node
    differently. Deployments read back from the controller have none (None).

    ``keep_alive_timeout_minutes`` and ``cleanup`` are netUnicorn's and are
    kept, not sent: shoal's own executors need no keep-alive (the agent
    reports a deployment whose executor dies, and a node that goes quiet has
    its deployments marked lost) and leave no containers behind. Through the
    ``/netunicorn`` endpoint, netUnicorn's client does use both.
    """

    node: Node
    pipeline: Workload | None = None
    executor_id: str = ""
    prepared: bool = False
    error: str | None = None
    state: str = ""
    environment_definition: EnvironmentDefinition | None = field(default=None, kw_only=True)
    keep_alive_timeout_minutes: int | float = field(default=10, kw_only=True)
    cleanup: bool = field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        minutes = self.keep_alive_timeout_minutes
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not minutes > 0:
            raise ValueError(
                f"deployment on {self.node}: keep_alive_timeout_minutes must be a positive "
                f"number of minutes, got {minutes!r}"
            )
        if self.pipeline is None:
            return
        self.pipeline = self.pipeline.dispatched(self.node)
        self.pipeline.validate()  # here, where a mistake is made, not on the node
        if self.environment_definition is None:
            # a copy: changing one deployment's must not change the pipeline's
            environment = copy.deepcopy(self.pipeline.environment_definition)
            known = set(environment.commands)
            for requirement in self.pipeline.requirements():
                if requirement not in known:
                    environment.commands.append(requirement)
                    known.add(requirement)
            self.environment_definition = environment

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
    """A set of deployments: pipelines mapped onto nodes.

    ``deployment_context`` is netUnicorn's context for its connectors
    (``{connector: {key: value}}``); shoal sends it with the experiment and has
    no connectors that read it.
    """

    def __init__(self, deployment_context: dict[str, dict[str, str]] | None = None) -> None:
        self.deployment_map: list[Deployment] = []
        self.deployment_context: dict[str, dict[str, str]] | None = deployment_context

    def map(self, pipeline: Workload, nodes: Node | str | Iterable[Node | str]) -> Self:
        """Deploy ``pipeline`` (or an execution graph) on every node in ``nodes``
        (a node, a name, or many); its task dispatchers are dispatched for each node."""
        if not isinstance(pipeline, Workload):
            raise TypeError(
                "map() expects a Pipeline or an ExecutionGraph, "
                f"got {pipeline!r} of type {type(pipeline).__name__}"
            )
        if isinstance(nodes, Node | str):
            targets = [_as_node(nodes)]
        else:
            # convert everything first so a bad element leaves the experiment untouched
            targets = [_as_node(item) for item in nodes]
        # built in full first: a dispatcher that fails leaves the experiment untouched too
        self.deployment_map.extend([Deployment(node, pipeline) for node in targets])
        return self

    def append(self, node: Node | str, pipeline: Workload) -> Self:
        """Deploy ``pipeline`` on a single ``node``."""
        return self.map(pipeline, _as_node(node))

    def __add__(self, other: Experiment) -> Experiment:
        """A new experiment with this one's deployments (copied), then ``other``'s
        (as they are); ``other``'s deployment context is merged over this one's."""
        if not isinstance(other, Experiment):
            return NotImplemented
        combined = copy.deepcopy(self)
        combined.deployment_map.extend(other.deployment_map)
        if other.deployment_context:
            merged = dict(combined.deployment_context or {})
            merged.update(other.deployment_context)
            combined.deployment_context = merged
        return combined

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
    """The outcome of one deployment: per-task results, or an error.

    ``result`` is None until there is one, then the pair ``(Result, logs)``
    (:class:`~shoal.model.result.ResultWithLogs`), as netUnicorn gives it::

        outcome, logs = report.result       # netUnicorn's way
        report.result.unwrap()              # works too: the pair acts as its Result

    A bare Success or Failure assigned to ``result`` is paired with no logs.
    """

    node: Node
    result: ResultWithLogs | None
    error: str | None = None
    state: str = ""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "result" and isinstance(value, Result):
            value = ResultWithLogs(value, [])
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        lines = ["DeploymentExecutionResult:", f"  Node: {self.node}"]
        if self.result is None:
            lines.append("  Result: None")
        else:
            outcome, logs = self.result
            lines.append(f"  Result: {type(outcome)}")
            inner = outcome._inner_value
            if isinstance(inner, dict):
                lines.extend(f"    {key}: {value}" for key, value in inner.items())
            else:
                lines.append(f"    {inner}")
            if logs:
                lines.append("  Logs:")
                lines.extend(f"    {line.rstrip()}" for line in logs)
        if self.error:
            lines.append(f"  Error: {self.error}")
        if self.state and self.state != "finished":
            lines.append(f"  State: {self.state}")
        return "\n".join(lines)


@dataclass(repr=False)
class ExperimentExecutionInformation:
    """Status of an experiment together with its deployments and results.

    ``shoal_status`` is set only where ``status`` is netUnicorn's
    (:mod:`shoal.compat.netunicorn.client`): there a FAILED or CANCELLED run
    shows as FINISHED, and ``shoal_status`` keeps which it was.
    """

    status: ExperimentStatus
    experiment: Experiment | None
    execution_result: list[DeploymentExecutionResult] | None
    shoal_status: ExperimentStatus | None = field(default=None, kw_only=True)

    def __repr__(self) -> str:
        return (
            "ExperimentExecutionInformation:\n"
            f"status: {self.status}\n"
            f"experiment: \n{self.experiment!r}\n"
            f"execution_result:\n{self.execution_result!r}"
        )
