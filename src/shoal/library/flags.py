"""Flag tasks: synchronise pipelines on different nodes through the controller.

Names, arguments and return values follow netUnicorn's library: ``SetFlagTask``
and the atomic tasks return None, ``WaitForExactFlagResultTask`` returns the
values as a dict, and ``GetFlagTask`` returns the ``FlagValues``. A wait is
answered by the controller the moment the flag changes; nothing polls.
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

    def run(self) -> None:
        executor_flags().set(self.flag_name, self.flag_values)


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

    def run(self) -> None:
        executor_flags().increment(self.flag_name)


class AtomicDecrementFlagTask(Task):
    """Subtract 1 from the flag's int value, atomically across all nodes."""

    def __init__(self, flag_name: str, name: str | None = None) -> None:
        super().__init__(name)
        self.flag_name = flag_name

    def run(self) -> None:
        executor_flags().decrement(self.flag_name)


class WaitForExactFlagResultTask(Task):
    """Wait until the flag equals ``values`` (both fields); returns them as a dict.

    netUnicorn's task polls every ``sleep_time`` seconds and, with
    ``attempts``, gives up (``TimeoutError``, so the step fails) after that
    many looks. Here the controller wakes the wait when the flag changes, so
    ``sleep_time`` only sets how long ``attempts`` last: it gives up once
    ``(attempts - 1) * sleep_time`` seconds have passed, when netUnicorn's
    last look would have been. ``timeout`` (seconds) is shoal's direct way to
    say the same; with both, the shorter wins. Neither: it waits for ever.
    """

    def __init__(
        self,
        flag_name: str,
        values: FlagValues,
        sleep_time: float = 1,
        attempts: int | None = None,
        name: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(values, FlagValues):
            raise TypeError(f"values must be FlagValues, got {type(values).__name__}")
        if isinstance(sleep_time, bool) or not isinstance(sleep_time, int | float):
            raise TypeError(f"sleep_time must be a number of seconds, got {sleep_time!r}")
        if sleep_time < 0:
            raise ValueError(f"sleep_time must not be negative, got {sleep_time}")
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ValueError(f"attempts must be a positive int or None, got {attempts!r}")
        self.flag_name = flag_name
        self.values = values
        self.sleep_time = sleep_time
        self.attempts = attempts
        self.timeout = _shorter(timeout, None if attempts is None else (attempts - 1) * sleep_time)

    def run(self) -> dict[str, Any]:
        return executor_flags().wait_for(self.flag_name, self.values, self.timeout).to_dict()


def _shorter(a: float | None, b: float | None) -> float | None:
    """The smaller of two limits, None meaning no limit."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
