"""Tasks of a task graph.

A task reads input data objects and makes output data objects. A task with exactly
one output can stand wherever a data object is expected (:func:`to_data_object`).

>>> from shoal.graph.session import Session
>>> from shoal.graph.data_object import DataObject, blob
>>> class Fake:
...     def open_session(self, name): return 1
...     def close_session(self, session_id): pass
>>> with Session(Fake()):
...     t = Task("concat", inputs=[blob(b"a"), blob(b"b")], outputs=[DataObject("output")],
...              name="group/concat")
...     u = Task("sleep", config={"delay": 1.0}, inputs=[t])   # t stands for t.output
>>> t.output is t.outputs["output"], u.inputs[0] is t.output, t.name
(True, True, 'group/concat')

Rain's way to make a task type of one's own also works: a subclass with
``TASK_TYPE`` that passes ``inputs`` and ``outputs`` (a number, labels,
:class:`~shoal.graph.program.Output` s or data objects) first::

    class Twice(Task):
        TASK_TYPE = "buildin/concat"   # Rain's name of shoal's "concat"

        def __init__(self, obj):
            super().__init__((obj, obj), 1)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from shoal.graph.attributes import TaskInfo, TaskSpec, TaskSpecInput
from shoal.graph.data_instance import DataInstance
from shoal.graph.data_object import DataObject
from shoal.graph.exceptions import RainTypeError
from shoal.graph.ids import ID
from shoal.graph.labeled_list import LabeledList
from shoal.graph.program import Output
from shoal.graph.session import GraphError, Session, active_session
from shoal.graph.states import TaskState

__all__ = ["Task", "TaskInputs", "to_data_object"]

_UNSET: Any = object()


def _rain_builtin(task_type: str, config: Any) -> tuple[str, Any]:
    """Rain's names of the built-in tasks (``buildin/...``) as shoal's, with their config."""
    if not task_type.startswith("buildin/"):
        return task_type, config  # shoal's own name (every task a @remote function makes)
    from shoal.graph import builtins

    if task_type == "buildin/concat":
        return "concat", None
    if task_type == "buildin/sleep":
        delay = config.get("delay") if isinstance(config, dict) else config
        return "sleep", builtins.SleepConfig(float(delay))
    if task_type in ("buildin/open", "buildin/export", "buildin/open_dir"):
        if not isinstance(config, dict) or "path" not in config:
            raise ValueError(f"task type {task_type!r} needs config={{'path': ...}}")
        if task_type == "buildin/open":
            return "load", builtins.LoadConfig(config["path"], config.get("content_type"))
        if task_type == "buildin/open_dir":
            return "load_dir", builtins.LoadDirConfig(config["path"])
        return "store", builtins.StoreConfig(config["path"], bool(config.get("overwrite")))
    return task_type, config


def _make_outputs(outputs: Any, session: Session) -> tuple[list[DataObject], list[DataObject]]:
    """The output objects given as Rain allowed; also the ones made here (to undo)."""
    if outputs is None:
        return [], []
    if isinstance(outputs, bool):
        raise TypeError(f"task outputs are a number or a list, not {outputs!r}")
    if isinstance(outputs, int):
        if outputs < 0:
            raise ValueError(f"a task cannot have {outputs} outputs")
        made = [DataObject(session=session) for _ in range(outputs)]
        return made, made
    if isinstance(outputs, str | Output | DataObject):
        outputs = [outputs]
    result: list[DataObject] = []
    made: list[DataObject] = []
    for out in outputs:
        if isinstance(out, DataObject):
            result.append(out)
            continue
        if isinstance(out, str):
            obj = DataObject(out, session=session)
        elif isinstance(out, Output):
            obj = DataObject(
                out.label,
                data_type=out.data_type,
                content_type=out.effective_content_type,
                session=session,
            )
        else:
            raise TypeError(f"a task output is a label, an Output or a DataObject, not {out!r}")
        result.append(obj)
        made.append(obj)
    return result, made


class TaskInputs(LabeledList[DataObject]):
    """``task.inputs``: Rain's LabeledList of the input objects, which also equals a
    plain ``list`` of the same objects (a list has no labels to compare), as
    ``task.inputs`` did when it was a list (``task.inputs == [a, b]``)."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self.data == other
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like list


def _check_input_labels(inputs: Sequence[Any]) -> None:
    """``KeyError`` for a label given to two inputs: ``task.inputs`` (and the inputs a
    node hands the task) are a LabeledList, whose labels are unique (Rain's rule)."""
    seen: set[Any] = set()
    for item in inputs:
        if isinstance(item, tuple) and item and item[0] is not None:
            if item[0] in seen:
                raise KeyError(f"two inputs of the task are labelled {item[0]!r}")
            seen.add(item[0])


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_inside: dict[str, bool] = {}  # code file -> whether it is part of shoal.graph


def _is_ours(filename: str) -> bool:
    inside = _inside.get(filename)
    if inside is None:
        inside = _inside[filename] = os.path.dirname(os.path.abspath(filename)) == _PACKAGE
    return inside


def _creation_site() -> str:
    """``file:line`` of the user's code that made the task (the first frame outside shoal.graph)."""
    frame = sys._getframe(2)
    while frame is not None and _is_ours(frame.f_code.co_filename):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return ""
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def to_data_object(value: DataObject | Task) -> DataObject:
    """``value`` itself if a data object; the output of a single-output task.

    Raises :class:`~shoal.graph.exceptions.RainTypeError` (a ``RainException``, as
    in Rain, and a ``TypeError``) for anything else and :class:`GraphError` for a
    task whose number of outputs is not one.
    """
    if isinstance(value, DataObject):
        return value
    if isinstance(value, Task):
        return value.output
    hint = (
        "wrap it with blob()"
        if isinstance(value, str | bytes)
        else "wrap it with pickled() or blob(..., encode=...)"
    )
    raise RainTypeError(
        f"expected a data object or a task, not {type(value).__name__} {value!r}; {hint}"
    )


class Task:
    """A task in the active (or given) session.

    ``Task(task_type, config, inputs, outputs)``, or Rain's order ``Task(inputs,
    outputs, config=..., task_type=...)`` (then ``task_type`` defaults to the class's
    ``TASK_TYPE``). ``task_type`` names what runs it (``"concat"``, ``"execute"``,
    ``"python"``...; Rain's ``"buildin/..."`` names of built-ins are understood),
    ``config`` is its configuration, ``inputs`` data objects or single-output tasks,
    optionally as ``(label, obj)``, and ``outputs`` the objects this task makes: new
    data objects, a number of them, labels, or :class:`~shoal.graph.program.Output`
    specs. ``name`` may hold ``/``-separated groups. ``cpus`` goes to
    ``spec.resources``; ``user`` (Rain: ``user_spec``) to ``spec.user``.
    """

    TASK_TYPE: str | None = None
    _input_list: TaskInputs | None = None  # made by the inputs property

    def __init__(
        self,
        *args: Any,
        config: Any = _UNSET,
        inputs: Sequence[Any] = _UNSET,
        outputs: Any = _UNSET,
        task_type: str | None = None,
        name: str | None = None,
        cpus: int = 1,
        session: Session | None = None,
        user: dict[str, Any] | None = None,
        user_spec: dict[str, Any] | None = None,
    ) -> None:
        given: dict[str, Any] = {"config": config, "inputs": inputs, "outputs": outputs}
        if args and isinstance(args[0], str):
            order = ("task_type", "config", "inputs", "outputs")  # shoal's
        else:
            order = ("inputs", "outputs")  # Rain's, with TASK_TYPE
        if len(args) > len(order):
            raise TypeError(f"Task() takes at most {len(order)} positional arguments here")
        for key, value in zip(order, args, strict=False):
            if key == "task_type":
                if task_type is not None:
                    raise TypeError("Task() got task_type twice")
                task_type = value
            elif given[key] is not _UNSET:
                raise TypeError(f"Task() got {key} twice")
            else:
                given[key] = value
        if task_type is None:
            task_type = type(self).TASK_TYPE
        if task_type is None:
            raise ValueError(f"give {type(self).__name__}.TASK_TYPE or task_type=...")
        config = None if given["config"] is _UNSET else given["config"]
        inputs = () if given["inputs"] is _UNSET else given["inputs"]
        outputs = () if given["outputs"] is _UNSET else given["outputs"]
        if user_spec is not None:
            user = {**(user or {}), **user_spec}
        task_type, config = _rain_builtin(task_type, config)
        if not isinstance(inputs, list | tuple):
            inputs = list(inputs)  # read twice below: a generator would be used up
        _check_input_labels(inputs)
        self.session = session if session is not None else active_session()
        made: list[DataObject] = []
        try:
            outs, made = _make_outputs(outputs, self.session)
            self._build(task_type, config, inputs, outs, name, cpus, user)
        except BaseException:
            # Outputs made for this task must not linger in the session without it.
            if isinstance(outputs, Sequence) and not isinstance(outputs, str):
                made += [o for o in outputs if isinstance(o, DataObject)]
            self.session._discard(made)
            raise

    @classmethod
    def _of_parts(
        cls,
        task_type: str,
        config: Any,
        inputs: Sequence[tuple[str | None, DataObject]],
        outputs: list[DataObject],
        name: str,
        cpus: int,
        session: Session,
    ) -> Task:
        """A task in ``session`` of parts a ``@remote`` call made: shoal's own task
        type, fresh output objects, inputs with unique labels. ``Task(...)`` without
        its parsing of the two argument orders and of Rain's ways to give outputs."""
        task = cls.__new__(cls)
        task.session = session
        try:
            task._build(task_type, config, inputs, outputs, name, cpus, None)
        except BaseException:
            task.session._discard(outputs)
            raise
        return task

    def _build(
        self,
        task_type: str,
        config: Any,
        inputs: Sequence[Any],
        outputs: Sequence[DataObject],
        name: str | None,
        cpus: int,
        user: dict[str, Any] | None,
    ) -> None:
        self.session._check_open()
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise ValueError(f"cpus must be a positive int, not {cpus!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a task name is a str, not {type(name).__name__}")
        spec_inputs: list[TaskSpecInput] = []
        self._inputs: list[DataObject] = []
        for item in inputs:
            label = None
            if isinstance(item, tuple):
                label, item = item
            obj = to_data_object(item)
            if obj.session is not self.session:
                raise GraphError(f"{obj!r} belongs to another session than the new task")
            self._inputs.append(obj)
            spec_inputs.append(TaskSpecInput(obj.id, label))
        outs = list(outputs)
        for obj in outs:
            if not isinstance(obj, DataObject):
                raise TypeError(f"task outputs are DataObjects, not {obj!r}")
            if obj.session is not self.session:
                raise GraphError(f"output {obj!r} belongs to another session")
            if obj.producer is not None or obj.payload is not None or obj.is_submitted:
                raise GraphError(f"{obj!r} is already made by something else")
        self._outputs: LabeledList[DataObject] = LabeledList.of_lists(outs, [o.label for o in outs])
        for obj in outs:
            obj.producer = self
        self.name = name
        self.created_at = _creation_site()
        # Every part was checked above or made here: the spec need not check them again.
        self.spec = TaskSpec.of_checked_parts(
            id=self.session.new_id(),
            task_type=task_type,
            config=config,
            inputs=spec_inputs,
            outputs=[o.id for o in outs],
            resources={"cpus": cpus},
            user=dict(user or {}),
            name=name,
        )
        self.info: TaskInfo | None = None
        self._state: TaskState | None = None
        self._submitted = False
        self.session._register_task(self)

    @property
    def id(self) -> ID:
        """The task's ID."""
        assert self.spec.id is not None
        return self.spec.id

    @property
    def task_type(self) -> str:
        """What kind of task this is."""
        return self.spec.task_type

    @property
    def config(self) -> Any:
        """The task-type specific configuration."""
        return self.spec.config

    @property
    def cpus(self) -> int:
        """The number of cpus reserved for the task."""
        return int(self.spec.resources.get("cpus", 1))

    @property
    def inputs(self) -> TaskInputs:
        """The input objects, by position and by the label each was given (as Rain's
        ``LabeledList``; a ``@remote`` task's inputs are labelled by the parameter
        that took them). Read only, as in Rain: the task is made."""
        inputs = self._input_list
        if inputs is None:
            # Made when first asked for: most tasks are never asked (a submit reads
            # _inputs), and a remote call is a hot path.
            labels = [i.label for i in self.spec.inputs]
            inputs = self._input_list = TaskInputs.of_lists(list(self._inputs), labels)
        return inputs

    @property
    def outputs(self) -> LabeledList[DataObject]:
        """The output objects, by position and by label."""
        return self._outputs

    @property
    def output(self) -> DataObject:
        """The only output; :class:`GraphError` if the task has zero or several."""
        if len(self._outputs) != 1:
            raise GraphError(
                f"{self!r} has {len(self._outputs)} outputs, not one; use .outputs[...]"
            )
        return self._outputs[0]

    @property
    def is_submitted(self) -> bool:
        """Whether the task was sent in a submit."""
        return self._submitted

    @property
    def state(self) -> TaskState | None:
        """The state at the last submit, wait or update (``None`` before the submit)."""
        return self._state

    def _state_from_info(self) -> None:
        if self.info is None:
            return
        if self.info.error:
            self._state = TaskState.failed
        elif self.info.duration is not None:
            self._state = TaskState.finished

    def keep_outputs(self) -> None:
        """``keep()`` every output (before submit)."""
        for obj in self._outputs:
            obj.keep()

    def unkeep_outputs(self) -> None:
        """``unkeep()`` every output (Rain: kept outputs only; here, those that are kept)."""
        kept = [obj for obj in self._outputs if obj.is_kept()]
        if kept:
            self.session.unkeep(kept)

    def fetch_outputs(self) -> list[DataInstance]:
        """``[o.fetch() for o in self.outputs]``."""
        return [obj.fetch() for obj in self._outputs]

    def wait(self) -> None:
        """Block until the task is finished."""
        self.session.wait([self])

    def update(self) -> None:
        """Download the current ``info``."""
        self.session.update([self])

    def __reduce__(self) -> Any:
        # As a remote-function argument, a single-output task stands for its output.
        return self.output.__reduce__()

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<Task {self.spec.task_type}{name} {tuple(self.id)}>"
