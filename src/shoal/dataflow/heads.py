"""FISSION's head: a few bits that travel with every value, beside it.

The first three bits (from the most significant one) are reserved: bit 0
marks a value made up for a lost one (shoal drops lost rounds instead, so it
stays clear), bit 1 a reset of the sequence numbers (the network's; a job
may not set it) and bit 2 that the network finishes (``PythonJob.finish``).
The rest belong to the jobs. A job with ``HEAD = True`` reads the heads of
its inputs and sets those of its outputs; other jobs pass the bitwise or of
their inputs' heads on.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CORRUPTED_BIT", "FINISHED_BIT", "RESET_BIT", "Head"]

CORRUPTED_BIT = 0
RESET_BIT = 1
FINISHED_BIT = 2


class Head:
    """A head of ``size`` bytes, read and set bit by bit (bit 0 is the most significant).

    Supports ``&``, ``|``, ``^`` (with a Head or an int), ``<<``, ``>>``, ``~``,
    indexing (a bool), slicing (a Head of the bits taken) and setting a bit.
    """

    def __init__(self, head: int | bytes | Head = 0, size: int = 1) -> None:
        if isinstance(head, Head):
            head = head.head
        elif isinstance(head, bytes | bytearray):
            head = int.from_bytes(head, "big")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"a head has at least one byte, got size {size!r}")
        self._size = size
        self._head = int(head) & ((1 << (8 * size)) - 1)

    @property
    def head(self) -> int:
        return self._head

    @property
    def head_size(self) -> int:
        return self._size

    @property
    def bits(self) -> int:
        return 8 * self._size

    def _position(self, index: int) -> int:
        if not -self.bits <= index < self.bits:
            raise IndexError(f"bit {index} is out of range for a {self._size}-byte head")
        return index % self.bits

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            taken = [self[i] for i in range(*key.indices(self.bits))]
            value = 0
            for bit in taken:
                value = (value << 1) | int(bit)
            return Head(value, self._size)
        position = self._position(key)
        return bool(self._head >> (self.bits - 1 - position) & 1)

    def __setitem__(self, index: int, value: Any) -> None:
        position = self._position(index)
        if position == RESET_BIT and value:
            raise ValueError("bit 1 of a head (reset) is reserved for the network")
        mask = 1 << (self.bits - 1 - position)
        self._head = self._head | mask if value else self._head & ~mask

    def __len__(self) -> int:
        return self._size

    def __int__(self) -> int:
        return self._head

    def __index__(self) -> int:
        return self._head

    def to_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        return self._head.to_bytes(*args, **kwargs)

    def _other(self, other: Any) -> int:
        if isinstance(other, Head):
            return other.head
        if isinstance(other, int) and not isinstance(other, bool):
            return other
        raise TypeError(f"a head combines with a Head or an int, not {type(other).__name__}")

    def __and__(self, other: Any) -> Head:
        return Head(self._head & self._other(other), self._size)

    def __or__(self, other: Any) -> Head:
        return Head(self._head | self._other(other), self._size)

    def __xor__(self, other: Any) -> Head:
        return Head(self._head ^ self._other(other), self._size)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __lshift__(self, other: int) -> Head:
        return Head(self._head << other, self._size)

    def __rshift__(self, other: int) -> Head:
        return Head(self._head >> other, self._size)

    def __invert__(self) -> Head:
        return Head(~self._head, self._size)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Head):
            return self._head == other._head
        if isinstance(other, int):
            return self._head == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._head)

    def __bool__(self) -> bool:
        return bool(self._head)

    def __repr__(self) -> str:
        return f"HEAD: {self._head:0{self.bits}b}"

    __str__ = __repr__


def finished_mask(size: int) -> int:
    """The int with only the finished bit of a ``size``-byte head set."""
    return 1 << (8 * size - 1 - FINISHED_BIT)
