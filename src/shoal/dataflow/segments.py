"""How a pipe's values travel: runs of consecutive keys.

Values of one pipe have increasing keys ``(epoch, seq)`` (see
:mod:`shoal.dataflow.rounds`), most often consecutive: a source numbers its
values 0, 1, 2, ... So a batch is a list of runs, not of ``(key, value)``
pairs: pickling and unpickling a key tuple per value cost more than the
small values themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any

# [epoch, first seq, values, heads or None]: values[i] has key (epoch, first + i)
# and head heads[i] (0 without heads). A list: the sender's open run grows in place.
Segment = list[Any]


def values_in(segments: Iterable[Segment]) -> int:
    """How many values ``segments`` hold."""
    return sum(len(segment[2]) for segment in segments)


def items_of(segment: Segment) -> Iterator[tuple[Any, ...]]:
    """The ``(key, value)`` (or ``(key, value, head)``) pairs of one segment."""
    epoch, first, values, heads = segment
    keys = zip(repeat(epoch), range(first, first + len(values)), strict=False)  # repeat: endless
    if heads is not None:
        return zip(keys, values, heads, strict=True)
    return zip(keys, values, strict=True)


__all__ = ["Segment", "items_of", "values_in"]
