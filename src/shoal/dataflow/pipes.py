"""Pipes: the typed, numbered connections between jobs.

A pipe is named by its integer id; the same id written in two jobs' lists is
the same pipe (one source job, one destination job). The class decides how
values travel (pickle, JSON, fixed-size bytes) and how the receiver sees them
(``BLOCK_COUNT`` values per round, or an optional input that never blocks).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

__all__ = [
    "BasePipe",
    "BytesPipe",
    "JSONPipe",
    "OptionalJSONPipe",
    "OptionalMixIn",
    "OptionalPicklePipe",
    "PicklePipe",
]


class BasePipe:
    """A connection from one job's output to another job's input.

    ``BLOCK_COUNT`` > 1 hands the receiver a list of that many consecutive
    values per round instead of single values.
    """

    BLOCK_COUNT: ClassVar[int] = 1
    OPTIONAL: ClassVar[bool] = False

    def __init__(self, id: int) -> None:
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"a pipe id must be an int, got {id!r}")
        self.id = id

    def encode(self, value: Any) -> Any:
        """What goes on the wire for ``value`` (checked on the sending side)."""
        return value

    def decode(self, data: Any) -> Any:
        """The value the receiver gets back from :meth:`encode`'s output."""
        return data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BasePipe) and other.id == self.id and type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id})"


class PicklePipe(BasePipe):
    """Carries any picklable Python value."""


class JSONPipe(BasePipe):
    """Carries JSON values; a value JSON cannot encode is refused when sent."""

    def encode(self, value: Any) -> Any:
        try:
            return json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"pipe {self.id} is a JSONPipe and cannot carry {value!r}: {exc}"
            ) from None

    def decode(self, data: Any) -> Any:
        return json.loads(data)


class BytesPipe(BasePipe):
    """Carries ``bytes`` values of exactly ``size`` bytes each."""

    def __init__(self, id: int, size: int) -> None:
        super().__init__(id)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"BytesPipe({id}): size must be a positive int, got {size!r}")
        self.size = size

    def encode(self, value: Any) -> Any:
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        if not isinstance(value, bytes) or len(value) != self.size:
            got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
            raise TypeError(f"pipe {self.id} carries {self.size} bytes per value, got {got}")
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id}, {self.size})"


class OptionalMixIn:
    """Makes a pipe an optional input: the receiver never waits for it.

    Each round the receiver takes the oldest buffered value. With an empty
    buffer it gets the last value it took when ``OPTIONAL_STORE`` is on,
    otherwise ``OPTIONAL_DEFAULT`` (also the value before anything arrived).
    ``OPTIONAL_BUFFER_SIZE`` bounds the buffer (0: unbounded); when it is
    full, ``OPTIONAL_DELETE_MODE`` says which value is dropped: ``'oldest'``
    (the buffer keeps the newest) or ``'newest'`` (the arriving one is dropped).
    """

    OPTIONAL: ClassVar[bool] = True
    OPTIONAL_DEFAULT: ClassVar[Any] = None
    OPTIONAL_STORE: ClassVar[bool] = False
    OPTIONAL_BUFFER_SIZE: ClassVar[int] = 0
    OPTIONAL_DELETE_MODE: ClassVar[str] = "oldest"


class OptionalPicklePipe(OptionalMixIn, PicklePipe):
    """An optional input carrying any picklable value."""


class OptionalJSONPipe(OptionalMixIn, JSONPipe):
    """An optional input carrying JSON values."""
