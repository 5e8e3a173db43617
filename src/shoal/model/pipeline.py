"""Tasks and pipelines: what runs on a node."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Self, TypeAlias
from uuid import uuid4

from shoal.model.environment import EnvironmentDefinition, ShellExecution

if TYPE_CHECKING:
    from shoal.model.node import Node


class Task(ABC):
    """A unit of work executed on a node; subclasses implement :meth:`run`.

    ``requirements`` lists shell commands to run on the node before the pipeline.
    """

    requirements: list[str] = []

    name: str
    previous_steps: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # defaults live here so subclasses that skip super().__init__() still work
        self = super().__new__(cls)
        self.name = str(uuid4())
        self.previous_steps = {}
        self.requirements = list(cls.requirements)
        return self

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    @abstractmethod
    def run(self) -> Any:
        """Do the work; the return value becomes the task's result."""

    def __call__(self) -> Any:
        return self.run()

    def add_requirement(self, command: str) -> Self:
        """Add a shell command to run on the node before the pipeline, for this
        instance only (not for every instance of the class); returns ``self``."""
        if not isinstance(command, str):
            raise TypeError(f"a requirement is a shell command (str), got {_describe(command)}")
        # a fresh list: never the class's, nor one shared with a copy of this task
        self.requirements = [*self.requirements, command]
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class TaskDispatcher(ABC):
    """Stands in a pipeline for a task that depends on the node it runs on.

    Subclasses implement :meth:`dispatch`, which gets the :class:`Node` and
    returns the :class:`Task` to run there (another class per architecture,
    node-specific arguments, ...). Dispatching happens when the pipeline is
    put on a node (``Experiment.map`` / ``append``), so each deployment holds
    the tasks its node will run::

        class SayIP(TaskDispatcher):
            def dispatch(self, node: Node) -> Task:
                return Echo(node["ipv4"])
    """

    name: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # as for Task: subclasses that skip super().__init__() still get a name
        self = super().__new__(cls)
        self.name = str(uuid4())
        return self

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    @abstractmethod
    def dispatch(self, node: Node) -> Task:
        """Return the task to run on ``node``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} (dispatcher)>"


#: What a stage holds: tasks, and dispatchers that become tasks per node.
TaskElement: TypeAlias = Task | TaskDispatcher


def _dispatch(element: TaskElement, node: Node) -> Task:
    if not isinstance(element, TaskDispatcher):
        return element
    task = element.dispatch(node)
    if not isinstance(task, Task):
        raise TypeError(
            f"{type(element).__name__}.dispatch({node}) must return a Task, got {_describe(task)}"
        )
    return task


def _describe(obj: object) -> str:
    hint = " (a class; did you forget to instantiate it?)" if isinstance(obj, type) else ""
    return f"{obj!r} of type {type(obj).__name__}{hint}"


Stage: TypeAlias = TaskElement | list[TaskElement] | tuple[TaskElement, ...]


class Workload(ABC):
    """What one deployment runs on its node: a :class:`Pipeline` (stages in a
    row) or an :class:`~shoal.model.execution_graph.ExecutionGraph`.

    ``environment_definition`` (a :class:`~shoal.model.environment.ShellExecution`
    by default) says how the node is prepared: its commands run before the
    tasks' requirements, its ``runtime_context.environment_variables`` are set
    for the executor. ``early_stopping``: a failed task ends the run.
    ``report_results`` is netUnicorn's; shoal always keeps the results, so it
    changes nothing.
    """

    def __init__(
        self,
        early_stopping: bool = True,
        report_results: bool = True,
        environment_definition: EnvironmentDefinition | None = None,
        name: str | None = None,
    ) -> None:
        self.name: str = name if name is not None else str(uuid4())
        self.early_stopping = early_stopping
        self.report_results = report_results
        self.environment_definition: EnvironmentDefinition = (
            environment_definition if environment_definition is not None else ShellExecution()
        )

    @property
    @abstractmethod
    def tasks(self) -> list[TaskElement]:
        """All tasks (and dispatchers not dispatched yet), in order."""

    @abstractmethod
    def dispatched(self, node: Node) -> Self:
        """This workload as it runs on ``node``: every :class:`TaskDispatcher`
        replaced by the task its ``dispatch(node)`` returns (itself if it has none)."""

    def validate(self) -> None:
        """Raise ValueError naming what keeps this workload from running (a
        pipeline is checked as it is built: nothing is left to check)."""
        return None

    def requirements(self) -> list[str]:
        """All tasks' requirements in order, without duplicates (a dispatcher's
        come with the task it dispatches to)."""
        # dict keeps insertion order, so this dedupes while preserving order
        return list(
            dict.fromkeys(
                req for task in self.tasks if isinstance(task, Task) for req in task.requirements
            )
        )

    def has_dispatchers(self) -> bool:
        """True if some task is still a :class:`TaskDispatcher`."""
        return any(isinstance(task, TaskDispatcher) for task in self.tasks)


class Pipeline(Workload):
    """An ordered list of stages; tasks within one stage run in parallel. The
    other arguments are :class:`Workload`'s."""

    def __init__(
        self,
        tasks: Iterable[Stage] | TaskElement | None = None,
        early_stopping: bool = True,
        report_results: bool = True,
        environment_definition: EnvironmentDefinition | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(early_stopping, report_results, environment_definition, name)
        self.stages: list[list[TaskElement]] = []
        if tasks is None:
            return
        if isinstance(tasks, Task | TaskDispatcher):
            self.then(tasks)
            return
        for element in tasks:
            self.then(element)

    def then(self, tasks: Stage) -> Self:
        """Append a stage: a single Task (or TaskDispatcher), or a list/tuple of
        them run in parallel."""
        stage_index = len(self.stages)
        if isinstance(tasks, Task | TaskDispatcher):
            self.stages.append([tasks])
            return self
        if not isinstance(tasks, list | tuple):
            raise TypeError(
                f"stage {stage_index}: expected a Task or a list of Tasks, got {_describe(tasks)}"
            )
        if not tasks:
            raise ValueError(f"stage {stage_index}: a stage needs at least one Task, got {tasks!r}")
        for position, task in enumerate(tasks):
            if not isinstance(task, Task | TaskDispatcher):
                raise TypeError(
                    f"stage {stage_index}, position {position}: expected a Task, "
                    f"got {_describe(task)}"
                )
        self.stages.append(list(tasks))
        return self

    @property
    def tasks(self) -> list[TaskElement]:
        """All tasks (and dispatchers not dispatched yet), stage by stage."""
        return [task for stage in self.stages for task in stage]

    def dispatched(self, node: Node) -> Self:
        """This pipeline as it runs on ``node``: every :class:`TaskDispatcher`
        replaced by the task its ``dispatch(node)`` returns.

        Without dispatchers it is the pipeline itself; otherwise a copy (same
        name, settings and other tasks), so one pipeline can be put on many nodes.
        """
        if not self.has_dispatchers():
            return self
        copied = copy.copy(self)
        copied.stages = [[_dispatch(task, node) for task in stage] for stage in self.stages]
        return copied

    def copy(self) -> Pipeline:
        """A new pipeline (with a new name) with the same settings and stages.

        Stages are copied, tasks are shared (as netUnicorn's ``copy``): adding a
        stage to the copy leaves this pipeline as it is.
        """
        copied = Pipeline(
            early_stopping=self.early_stopping,
            report_results=self.report_results,
            environment_definition=self.environment_definition,
        )
        copied.stages = [list(stage) for stage in self.stages]
        return copied

    def __iter__(self) -> Iterator[list[TaskElement]]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __repr__(self) -> str:
        stages = " -> ".join(
            "[" + ", ".join(task.name for task in stage) + "]" for stage in self.stages
        )
        return (
            f"<Pipeline {self.name} early_stopping={self.early_stopping}: {stages or 'no stages'}>"
        )
