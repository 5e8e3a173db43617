"""The arguments of a remote function's call: the data objects in them
become the task's inputs, pickled as references to those inputs and resolved
to the inputs' values on the node."""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator, Sequence
from typing import Any

from shoal.graph.data_object import DataObject
from shoal.graph.session import GraphError
from shoal.graph.task import Task, to_data_object

# The inputs found so far while pickling a call's arguments (set by the caller).
PICKLED_INPUTS: contextvars.ContextVar[list[DataObject] | None] = contextvars.ContextVar(
    "shoal_graphPICKLED_INPUTS", default=None
)
_input_values: contextvars.ContextVar[Sequence[Any] | None] = contextvars.ContextVar(
    "shoal_graph_input_values", default=None
)

SCALARS = frozenset((int, float, str, bytes, bool, type(None)))
DIRECT_INPUTS = (DataObject, Task)  # arguments that become task inputs
_LEAVES = (
    str,
    bytes,
    bytearray,
    int,
    float,
    complex,
    bool,
    type(None),
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
)


def reduce_data_object(obj: DataObject) -> tuple[Any, tuple[int]]:
    """``DataObject.__reduce__``: a reference to the task input, while pickling the
    arguments of a remote function; a :class:`GraphError` otherwise."""
    inputs = PICKLED_INPUTS.get()
    if inputs is None:
        raise GraphError(
            f"{obj!r} cannot be pickled; data objects are passed to @remote functions "
            "as arguments, and fetch() gives their data"
        )
    for index, known in enumerate(inputs):
        if known is obj:
            return input_placeholder, (index,)
    inputs.append(obj)
    return input_placeholder, (len(inputs) - 1,)


def input_placeholder(index: int) -> Any:
    """What a data object in pickled arguments unpickles to: input ``index``'s value.

    Only valid inside :func:`resolving_inputs`.
    """
    values = _input_values.get()
    if values is None:
        raise RuntimeError(
            "remote arguments refer to task inputs; unpickle them inside "
            "shoal.graph.remote.resolving_inputs(inputs)"
        )
    return values[index]


@contextlib.contextmanager
def resolving_inputs(values: Sequence[Any]) -> Iterator[None]:
    """Unpickle remote ``args`` inside this block: input ``i`` becomes ``values[i]``.

    >>> # with resolving_inputs(instances): args, kwargs = serialize.loads(config["args"])
    """
    token = _input_values.set(values)
    try:
        yield
    finally:
        _input_values.reset(token)


def find_data_objects(value: Any) -> tuple[list[DataObject], set[type]]:
    """The data objects anywhere in ``value`` (in order, once each), and the types of
    the plain objects walked through (for pickling user classes by value).

    Single-output tasks count as their output.
    """
    found: list[DataObject] = []
    found_ids: set[int] = set()
    seen: set[int] = set()
    kinds: set[type] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Task):
            item = to_data_object(item)
        if isinstance(item, DataObject):
            if id(item) not in found_ids:
                found_ids.add(id(item))
                found.append(item)
            continue
        if isinstance(item, _LEAVES) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            children = [x for kv in item.items() for x in kv]
        elif isinstance(item, list | tuple | set | frozenset):
            children = list(item)
        elif hasattr(item, "__dict__"):
            kinds.add(type(item))
            children = list(vars(item).values())
        else:
            continue
        stack.extend(reversed(children))
    return found, kinds


def direct_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[DataObject]:
    """The data objects among the arguments themselves, in the order
    :func:`find_data_objects` gives them (for arguments that are not containers)."""
    found: list[DataObject] = []
    for item in (*args, *kwargs.values()):
        if isinstance(item, DIRECT_INPUTS):
            obj = to_data_object(item)
            if not any(known is obj for known in found):
                found.append(obj)
    return found
