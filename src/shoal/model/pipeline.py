"""Tasks and pipelines: what runs on a node."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, Self
from uuid import uuid4


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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _describe(obj: object) -> str:
    hint = " (a class; did you forget to instantiate it?)" if isinstance(obj, type) else ""
    return f"{obj!r} of type {type(obj).__name__}{hint}"


class Pipeline:
    """An ordered list of stages; tasks within one stage run in parallel."""

    def __init__(
        self,
        tasks: Iterable[Task | list[Task] | tuple[Task, ...]] | Task | None = None,
        early_stopping: bool = True,
        name: str | None = None,
    ) -> None:
        self.name: str = name if name is not None else str(uuid4())
        self.early_stopping = early_stopping
        self.stages: list[list[Task]] = []
        if tasks is None:
            return
        if isinstance(tasks, Task):
            self.then(tasks)
            return
        for element in tasks:
            self.then(element)

    def then(self, tasks: Task | list[Task] | tuple[Task, ...]) -> Self:
        """Append a stage: a single Task, or a list/tuple of Tasks run in parallel."""
        stage_index = len(self.stages)
        if isinstance(tasks, Task):
            self.stages.append([tasks])
            return self
        if not isinstance(tasks, list | tuple):
            raise TypeError(
                f"stage {stage_index}: expected a Task or a list of Tasks, got {_describe(tasks)}"
            )
        if not tasks:
            raise ValueError(f"stage {stage_index}: a stage needs at least one Task, got {tasks!r}")
        for position, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise TypeError(
                    f"stage {stage_index}, position {position}: expected a Task, "
                    f"got {_describe(task)}"
                )
        self.stages.append(list(tasks))
        return self

    @property
    def tasks(self) -> list[Task]:
        """All tasks, stage by stage."""
        return [task for stage in self.stages for task in stage]

    def requirements(self) -> list[str]:
        """All tasks' requirements in order, without duplicates."""
        # dict keeps insertion order, so this dedupes while preserving order
        return list(dict.fromkeys(req for task in self.tasks for req in task.requirements))

    def __iter__(self) -> Iterator[list[Task]]:
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
