"""A sleep of random length (netUnicorn's ``netunicorn.library.tasks.utils.sleep``)."""

from __future__ import annotations

import random

from shoal.library.basic import SleepTask
from shoal.model.node import Node
from shoal.model.pipeline import Task, TaskDispatcher

__all__ = ["RandomSleepTask"]


class RandomSleepTask(TaskDispatcher):
    """Sleep a whole number of seconds drawn from ``seconds_min..seconds_max``
    (both included), drawn anew for each node the pipeline is put on."""

    def __init__(self, seconds_min: int, seconds_max: int, name: str | None = None) -> None:
        for label, value in (("seconds_min", seconds_min), ("seconds_max", seconds_max)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label} must be a whole number of seconds, got {value!r}")
            if value < 0:
                raise ValueError(f"{label} must not be negative, got {value}")
        if seconds_min > seconds_max:
            raise ValueError(f"seconds_min ({seconds_min}) is above seconds_max ({seconds_max})")
        super().__init__(name)
        self.seconds_min = seconds_min
        self.seconds_max = seconds_max

    def dispatch(self, node: Node) -> Task:
        return SleepTask(seconds=random.randint(self.seconds_min, self.seconds_max))
