"""Flag tasks: synchronise pipelines on different nodes through the controller.

Names and return values follow netUnicorn's library: ``SetFlagTask`` and the
atomic tasks return ``0``, ``WaitForExactFlagResultTask`` returns the values as
a dict, and ``GetFlagTask`` returns the ``FlagValues``. A wait is answered by
the controller the moment the flag changes; nothing polls.
"""

from __future__ import annotations

from typing import Any

from shoal.client.executor_flags import executor_flags
from shoal.model.flags import FlagValues
from shoal.model.pipeline import Task

__all__ = [
    "AtomicDecrementFlagTask",
    "AtomicIncrementFlagTask",
    "FlagValues",
    "GetFlagTask",
    "SetFlagTask",
    "WaitForExactFlagResultTask",
]


class SetFlagTask(Task):
    """Set both values of a flag::

    SetFlagTask("clients_control", flag_values=FlagValues(text_value="stage 1", int_value=0))
    """

    def __init__(self, flag_name: str, flag_values: FlagValues, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(flag_values, FlagValues):
            raise TypeError(f"flag_values must be FlagValues, got {type(flag_values).__name__}")
        self.flag_name = flag_name
        self.flag_values = flag_values

    def run(self) -> int:
        executor_flags().set(self.flag_name, self.flag_values)
        return 0


class GetFlagTask(Task):
    """Read a flag; the step's result is its ``FlagValues``."""

    def __init__(self, flag_name: str, name: str | None = None) -> None:
        super().__init__(name)
        self.flag_name = flag_name

    def run(self) -> FlagValues:
        return executor_flags().get(self.flag_name)


class AtomicIncrementFlagTask(Task):
    """Add 1 to the flag's int value, atomically across all nodes."""

    def __init__(self, flag_name: str, name: str | None = None) -> None:
        super().__init__(name)
        self.flag_name = flag_name

    def run(self) -> int:
        executor_flags().increment(self.flag_name)
        return 0


class AtomicDecrementFlagTask(Task):
    """Subtract 1 from the flag's int value, atomically across all nodes."""

    def __init__(self, flag_name: str, name: str | None = None) -> None:
        super().__init__(name)
        self.flag_name = flag_name

    def run(self) -> int:
        executor_flags().decrement(self.flag_name)
        return 0


class WaitForExactFlagResultTask(Task):
    """Wait until the flag equals ``values`` (both fields); ``timeout`` in seconds or None."""

    def __init__(
        self,
        flag_name: str,
        values: FlagValues,
        timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(values, FlagValues):
            raise TypeError(f"values must be FlagValues, got {type(values).__name__}")
        self.flag_name = flag_name
        self.values = values
        self.timeout = timeout

    def run(self) -> dict[str, Any]:
        return executor_flags().wait_for(self.flag_name, self.values, self.timeout).to_dict()
