"""Identifiers of tasks and data objects: ``ID(session_id, id)``."""

from __future__ import annotations

from typing import Any, NamedTuple


class ID(NamedTuple):
    """The ID of a task or a data object: the session it lives in, and its number there.

    A plain tuple, so it hashes, compares and unpacks like one. On the wire (JSON)
    it is the two-element list ``[session_id, id]``.

    >>> oid = ID(3, 14)
    >>> oid.session_id, oid.id
    (3, 14)
    >>> oid.to_json()
    [3, 14]
    >>> ID.from_json([3, 14]) == oid
    True
    """

    session_id: int
    id: int

    def to_json(self) -> list[int]:
        """The JSON form: ``[session_id, id]``."""
        return [self.session_id, self.id]

    @classmethod
    def from_json(cls, value: Any) -> ID:
        """Read an ID from ``[session_id, id]`` (a list or a tuple), or take an ``ID`` as is.

        Raises ``ValueError`` naming the value when it is not two integers.
        """
        if isinstance(value, ID):
            return value
        if (
            isinstance(value, list | tuple)
            and len(value) == 2
            # bool is an int subclass, but True is no session number
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return cls(value[0], value[1])
        raise ValueError(f"an ID is a pair of integers [session_id, id], not {value!r}")
