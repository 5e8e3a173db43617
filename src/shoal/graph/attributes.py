"""The ``spec`` and ``info`` attributes of tasks and data objects.

*spec* is what the user specified (fixed once submitted); *info* is what the system
learned running it (set by the node, and in part by the task; fixed once finished,
except ``debug``, which may still be appended to). Both travel as JSON: ``to_dict()``
gives a JSON-ready dict that leaves out ``None``, empty strings, empty lists and
empty dicts, and ``from_dict()`` reads one back, filling what is missing with the
defaults and ignoring keys it does not know (so that a newer peer may add some).

>>> spec = ObjectSpec(id=ID(1, 7), label="output1", content_type="json")
>>> spec.to_dict()
{'id': [1, 7], 'label': 'output1', 'content_type': 'json', 'data_type': 'blob'}
>>> ObjectSpec.from_dict(spec.to_dict()) == spec
True
>>> info = TaskInfo()
>>> info.append_debug("Variable a = 11")
>>> info.append_debug("Variable b = 21")
>>> print(info.debug)
Variable a = 11
Variable b = 21
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from shoal.graph import content_types
from shoal.graph.ids import ID

__all__ = [
    "DataType",
    "ObjectInfo",
    "ObjectSpec",
    "TaskInfo",
    "TaskSpec",
    "TaskSpecInput",
]

DATA_TYPES = ("blob", "dir")


class DataType(enum.StrEnum):
    """Rain's ``rain.common.DataType``: the data type of an object.

    shoal keeps data types as the plain strings ``"blob"`` and ``"dir"`` (the values
    of Rain's enum); the members are ``str`` s equal to those, so Rain's comparisons
    (``obj.spec.data_type == DataType.DIRECTORY``) hold, and wherever a data type is
    given one may pass a member.

    >>> DataType.BLOB == "blob", DataType("dir") is DataType.DIRECTORY
    (True, True)
    """

    BLOB = "blob"
    DIRECTORY = "dir"

    # Hashed as its value, so that a member finds the plain string in a dict or set.
    __hash__ = str.__hash__


# --- reading untrusted dicts: every wrong value names its field --------------------


def _str(cls: str, name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{cls}.{name} must be a string, not {type(value).__name__} {value!r}")
    return value


def _dict(cls: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{cls}.{name} must be a dict, not {type(value).__name__} {value!r}")
    return dict(value)


def _number(cls: str, name: str, value: Any, kind: type[int] | type[float]) -> Any:
    if value is None:
        return None
    # bool is an int subclass; a size of True is a bug somewhere, not a size.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{cls}.{name} must be a number, not {type(value).__name__} {value!r}")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{cls}.{name} must be a whole number, not {value!r}")
    return kind(value)


def _id(cls: str, name: str, value: Any) -> ID | None:
    if value is None:
        return None
    try:
        return ID.from_json(value)
    except ValueError as exc:
        raise ValueError(f"{cls}.{name}: {exc}") from None


def _time(cls: str, name: str, value: Any) -> datetime | None:
    # JSON carries ISO 8601 text; a number is taken as seconds since the epoch (UTC).
    if value is None or isinstance(value, datetime):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            return datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        pass
    raise ValueError(f"{cls}.{name} must be an ISO 8601 time, not {value!r}")


def _content_type(cls: str, name: str, value: Any) -> str | None:
    try:
        return content_types.validate(value)
    except ValueError as exc:
        raise ValueError(f"{cls}.{name}: {exc}") from None


def _omit(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


class _Attributes:
    """What spec and info classes share: JSON dicts in and out."""

    __slots__ = ()

    # Fields whose None/'' is dropped, but whose other "empty" values (0, {}) are data.
    _keep_empty: ClassVar[frozenset[str]] = frozenset()

    def _field_to_json(self, name: str, value: Any) -> Any:
        if isinstance(value, ID):
            return value.to_json()
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            # a copy, so the caller's edits of the dict do not reach this object
            return dict(value)
        return value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the attributes, leaving out None and empty values."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None or (f.name not in self._keep_empty and _omit(value)):
                continue
            out[f.name] = self._field_to_json(f.name, value)
        return out

    @classmethod
    def _check_keys(cls, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} is read from a dict, not {type(data).__name__}")
        # None reads as missing: the JSON may spell "unset" either way.
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Read a dict made by :meth:`to_dict` (or by a peer): missing keys take the
        defaults, unknown keys are ignored, and ``__post_init__`` checks the values."""
        data = cls._check_keys(data)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})  # type: ignore[arg-type]


class _Debug:
    """What task and object info share: ``error`` and the appendable ``debug`` text."""

    __slots__ = ()
    debug: str
    error: str

    @property
    def failed(self) -> bool:
        """Whether ``error`` is non-empty (an empty error means success)."""
        return bool(self.error)

    def append_debug(self, message: str) -> None:
        """Add ``message`` as a new line of the debug log."""
        # One message per line, no trailing newline: the log reads as its lines.
        self.debug = f"{self.debug}\n{message}" if self.debug else str(message)


@dataclass(slots=True)
class TaskSpecInput(_Attributes):
    """One input of a task: the object's ID and, optionally, the label it has at the task.

    >>> TaskSpecInput(ID(1, 2), "data").to_dict()
    {'id': [1, 2], 'label': 'data'}
    """

    id: ID
    label: str | None = None

    def __post_init__(self) -> None:
        self.id = _id("TaskSpecInput", "id", self.id)  # type: ignore[assignment]
        if self.id is None:
            raise ValueError("TaskSpecInput.id is required")
        self.label = _str("TaskSpecInput", "label", self.label, optional=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Read ``{"id": [session_id, id], "label": ...}``; only ``id`` is required."""
        data = cls._check_keys(data)
        if "id" not in data:
            raise ValueError(f"TaskSpecInput needs an 'id', got {data!r}")
        return cls(id=data["id"], label=data.get("label"))


@dataclass(slots=True)
class TaskSpec(_Attributes):
    """What the user specified for a task.

    ``task_type`` names the kind of task (the guide's example: ``"executor/method"``), and
    ``config`` is its JSON-serialisable, task-type specific configuration. ``inputs``
    are :class:`TaskSpecInput`, ``outputs`` the IDs of the objects the task makes,
    ``resources`` e.g. ``{"cpus": 4}``, ``user`` anything JSON-serialisable.

    >>> spec = TaskSpec(id=ID(1, 3), task_type="concat",
    ...                 inputs=[TaskSpecInput(ID(1, 1)), TaskSpecInput(ID(1, 2))],
    ...                 outputs=[ID(1, 4)])
    >>> spec.user["foo"] = 42
    >>> TaskSpec.from_dict(spec.to_dict()) == spec
    True
    """

    _keep_empty: ClassVar[frozenset[str]] = frozenset({"config"})

    id: ID | None = None
    task_type: str = ""
    config: Any = None
    inputs: list[TaskSpecInput] = field(default_factory=list)
    outputs: list[ID] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # '/'-separated groups, for the dashboard

    def __post_init__(self) -> None:
        self.id = _id("TaskSpec", "id", self.id)
        self.name = _str("TaskSpec", "name", self.name, optional=True)
        self.task_type = _str("TaskSpec", "task_type", self.task_type) or ""
        if not isinstance(self.inputs, list):
            raise ValueError(f"TaskSpec.inputs must be a list, not {self.inputs!r}")
        self.inputs = [
            i if isinstance(i, TaskSpecInput) else TaskSpecInput.from_dict(i) for i in self.inputs
        ]
        if not isinstance(self.outputs, list):
            raise ValueError(f"TaskSpec.outputs must be a list, not {self.outputs!r}")
        self.outputs = [_id("TaskSpec", "outputs", o) for o in self.outputs]  # type: ignore[misc]
        if None in self.outputs:
            raise ValueError("TaskSpec.outputs must be IDs, not None")
        self.resources = _dict("TaskSpec", "resources", self.resources)
        self.user = _dict("TaskSpec", "user", self.user)

    @classmethod
    def of_checked_parts(
        cls,
        id: ID,
        task_type: str,
        config: Any,
        inputs: list[TaskSpecInput],
        outputs: list[ID],
        resources: dict[str, Any],
        user: dict[str, Any],
        name: str | None,
    ) -> TaskSpec:
        """A spec of parts that are what the fields say already (a Task built by
        shoal.graph makes them so): none of the checks of untrusted input that
        ``TaskSpec(...)`` and :meth:`from_dict` do, which cost a fifth of making
        a small task."""
        spec = object.__new__(cls)
        spec.id, spec.task_type, spec.config, spec.name = id, task_type, config, name
        spec.inputs, spec.outputs, spec.resources, spec.user = inputs, outputs, resources, user
        return spec

    def _field_to_json(self, name: str, value: Any) -> Any:
        if name == "inputs":
            return [i.to_dict() for i in value]
        if name == "outputs":
            return [o.to_json() for o in value]
        return super(TaskSpec, self)._field_to_json(name, value)


@dataclass(slots=True)
class TaskInfo(_Debug, _Attributes):
    """What running a task told: ``error`` (non-empty means it failed), ``start_time``,
    ``duration`` in seconds, the ``governor`` that ran it (as in Rain, its address,
    ``host:port`` of the agent's channel server; the node's name when it has none) and,
    beside it, the ``node`` name, the ``debug`` log, and ``user`` data set by the task.
    Inside a running task ``ctx.info`` has the ``node`` and, lacking the address the
    controller sees, the node name as ``governor``.

    >>> info = TaskInfo(error="boom", duration=0.25, governor="node01")
    >>> info.failed, info.to_dict()
    (True, {'error': 'boom', 'duration': 0.25, 'governor': 'node01'})
    """

    error: str = ""
    start_time: datetime | None = None
    duration: float | None = None
    governor: str | None = None
    debug: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    node: str | None = None

    def __post_init__(self) -> None:
        self.error = _str("TaskInfo", "error", self.error) or ""
        self.start_time = _time("TaskInfo", "start_time", self.start_time)
        self.duration = _number("TaskInfo", "duration", self.duration, float)
        self.governor = _str("TaskInfo", "governor", self.governor, optional=True)
        self.node = _str("TaskInfo", "node", self.node, optional=True)
        self.debug = _str("TaskInfo", "debug", self.debug) or ""
        self.user = _dict("TaskInfo", "user", self.user)


@dataclass(slots=True)
class ObjectSpec(_Attributes):
    """What the user specified for a data object: ``id``, the ``label`` (its role at
    the task that makes it), the declared ``content_type``, the ``data_type``
    (``"blob"`` or ``"dir"``) and ``user`` data. An unspecified content type is ``None``
    (``''`` is accepted and turned into ``None``).

    >>> ObjectSpec(label="out", data_type="dir").to_dict()
    {'label': 'out', 'data_type': 'dir'}
    """

    id: ID | None = None
    label: str | None = None
    content_type: str | None = None
    data_type: str = "blob"
    user: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_checked_parts(
        cls, id: ID, label: str | None, content_type: str | None, data_type: str
    ) -> ObjectSpec:
        """A spec of parts checked already (an ``Output``'s, which checks them when
        it is made): none of ``ObjectSpec(...)``'s checks of untrusted input."""
        spec = object.__new__(cls)
        spec.id, spec.label, spec.content_type, spec.data_type = id, label, content_type, data_type
        spec.user = {}
        return spec

    def __post_init__(self) -> None:
        self.id = _id("ObjectSpec", "id", self.id)
        self.label = _str("ObjectSpec", "label", self.label, optional=True)
        self.content_type = _content_type("ObjectSpec", "content_type", self.content_type)
        if isinstance(self.data_type, DataType):
            self.data_type = self.data_type.value  # a plain str in the spec and its JSON
        if self.data_type not in DATA_TYPES:
            raise ValueError(f"ObjectSpec.data_type is 'blob' or 'dir', not {self.data_type!r}")
        self.user = _dict("ObjectSpec", "user", self.user)


@dataclass(slots=True)
class ObjectInfo(_Debug, _Attributes):
    """What making a data object told: ``error``, the final ``size`` in bytes
    (approximate for directories), the actual ``content_type`` (a subtype of the
    spec's), the ``debug`` log and ``user`` data.

    >>> ObjectInfo(size=0, content_type="text").to_dict()
    {'size': 0, 'content_type': 'text'}
    """

    error: str = ""
    size: int | None = None
    content_type: str | None = None
    debug: str = ""
    user: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.error = _str("ObjectInfo", "error", self.error) or ""
        self.size = _number("ObjectInfo", "size", self.size, int)
        if self.size is not None and self.size < 0:
            raise ValueError(f"ObjectInfo.size cannot be negative, got {self.size}")
        self.content_type = _content_type("ObjectInfo", "content_type", self.content_type)
        self.debug = _str("ObjectInfo", "debug", self.debug) or ""
        self.user = _dict("ObjectInfo", "user", self.user)
