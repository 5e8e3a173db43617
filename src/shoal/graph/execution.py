"""Running one graph task on a node: inputs in, outputs checked and placed.

Used by the agent's warm worker processes. A task arrives as a :class:`NodeTask`
(its inputs either inline bytes or paths in the node's object store); the result
is a :class:`NodeResult` whose outputs are inline bytes when small, or files
moved to the store paths the agent chose.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from shoal.client import serialize
from shoal.graph import builtins, content_types
from shoal.graph.attributes import ObjectInfo, ObjectSpec, TaskInfo, TaskSpec, TaskSpecInput
from shoal.graph.builtins_execute import execute
from shoal.graph.context import Context
from shoal.graph.data_instance import DataInstance, remove_path
from shoal.graph.ids import ID
from shoal.graph.labeled_list import LabeledList
from shoal.graph.remote import resolving_inputs
from shoal.graph.task_io import TaskCancelled, TaskFailed

__all__ = ["NodeInput", "NodeOutput", "NodeResult", "NodeTask", "add_functions", "run_task"]


# The agent hands tasks to its workers and takes their results back in msgpack
# (task_worker): as msgspec structs each costs well under a microsecond to
# encode or decode, where a pickled dataclass cost tens.


class NodeInput(msgspec.Struct):
    """One input of a task, as a worker gets it: inline data or a file's path."""

    id: int
    label: str | None
    data_type: str
    content_type: str | None
    data: bytes | None = None
    path: str | None = None
    user: dict[str, Any] = msgspec.field(default_factory=dict)  # the object's spec.user


class NodeOutput(msgspec.Struct):
    """One output a task makes, as a worker gets it."""

    id: int
    label: str | None
    data_type: str
    content_type: str | None
    store_path: str  # where the data go if they are too big to travel inline


class NodeTask(msgspec.Struct):
    """A task as the agent hands it to a worker."""

    session: int
    id: int
    task_type: str
    config: bytes
    inputs: list[NodeInput]
    outputs: list[NodeOutput]
    name: str = ""
    cpus: int = 1
    user: dict[str, Any] = msgspec.field(default_factory=dict)
    owner: str = ""  # login of the session's user
    function: str = ""  # a Python task's function, by digest (see add_functions)


class NodeResult(msgspec.Struct):
    """What a worker reports of a task it ran."""

    session: int
    id: int
    error: str = ""
    info: dict[str, Any] = msgspec.field(default_factory=dict)
    # (object id, size, actual content type, inline data or None when stored)
    outputs: list[tuple[int, int, str | None, bytes | None]] = msgspec.field(default_factory=list)


class _FunctionCache:
    """Python tasks' functions in this worker: sent once by digest (and unpickled
    at the first task that runs one), or, from older senders, carried in each
    task's config (then cached by their pickle: 10,000 tasks load it once)."""

    def __init__(self, size: int = 256) -> None:
        self._pickled: dict[str, bytes] = {}  # by digest, until first used
        self._loaded: dict[str, Any] = {}  # by digest
        self._inline: dict[bytes, Any] = {}  # by pickle
        self._size = size

    def add(self, functions: Mapping[str, bytes]) -> None:
        for digest, data in functions.items():
            if digest not in self._loaded:
                self._pickled[digest] = data

    def get(self, digest: str) -> Any:
        fn = self._loaded.get(digest)
        if fn is None:
            data = self._pickled.get(digest)
            if data is None:
                raise TaskFailed(f"the task's function {digest[:16]}... never reached this worker")
            # A function that does not unpickle fails each of its tasks alike.
            fn = self._loaded[digest] = serialize.loads(data)
            del self._pickled[digest]
        return fn

    def get_inline(self, data: bytes) -> Any:
        fn = self._inline.get(data)
        if fn is None:
            if len(self._inline) >= self._size:
                self._inline.pop(next(iter(self._inline)))
            fn = self._inline[data] = serialize.loads(data)
        return fn


_functions = _FunctionCache()


def add_functions(functions: Mapping[str, bytes]) -> None:
    """Pickled functions by digest, for the tasks that name them (NodeTask.function)."""
    _functions.add(functions)


def _instances(task: NodeTask) -> LabeledList[DataInstance]:
    values = []
    for i in task.inputs:
        spec = ObjectSpec(
            id=ID(task.session, i.id), label=i.label, data_type=i.data_type, user=dict(i.user)
        )
        info = ObjectInfo(content_type=i.content_type)
        if i.data is not None:
            values.append(DataInstance(i.data, data_type=i.data_type, spec=spec, info=info))
        else:
            values.append(DataInstance(path=i.path, spec=spec, info=info))
    return LabeledList(values, [i.label for i in task.inputs])


def run_task(
    task: NodeTask,
    *,
    work_dir: str | os.PathLike[str],
    inline_limit: int,
    cancel: threading.Event | None = None,
    node: str | None = None,
) -> NodeResult:
    """Run ``task``; never raises for a task's own failure (that is ``result.error``)."""
    started = time.time()
    t0 = time.perf_counter()
    # Made only when the task needs it (built-ins, stage_file): a directory
    # per task would cost more than a no-op task itself. A plain string until
    # then: Path arithmetic costs a no-op task as much again.
    scratch = f"{os.fspath(work_dir)}{os.sep}task-{task.session}-{task.id}"
    result = NodeResult(task.session, task.id)
    # A Python task makes its scratch folder only by staging a file; a built-in may always.
    staged = [task.task_type != "python"]
    described = _Description(task, started, node)
    try:
        # A Python task without inputs (the common no-op, leaf) needs no list of them.
        inputs = _instances(task) if task.inputs or task.task_type != "python" else _NONE
        outputs = _run(task, described, inputs, scratch, cancel, staged)
        result.outputs = _place_outputs(task, outputs, inline_limit, scratch)
    except TaskCancelled as exc:
        result.error = exc.message or "cancelled"
    except TaskFailed as exc:
        result.error = exc.message
    except Exception as exc:
        result.error = _describe(exc)
    finally:
        if staged[0] and os.path.lexists(scratch):
            remove_path(scratch)
    result.info = {
        "start_time": started,
        "duration": time.perf_counter() - t0,
    }
    info = described.info_made
    if info is not None:
        if info.debug:
            result.info["debug"] = info.debug
        if info.user:
            result.info["user"] = info.user
    return result


_NONE: LabeledList[DataInstance] = LabeledList([], [])  # read only: Python tasks without inputs


class _Description:
    """A task's TaskSpec and TaskInfo, made when its code first asks for them
    (``ctx.spec``, ``ctx.info``, ``ctx.debug``): most tasks never do, and making
    them (IDs, a datetime, validation) cost as much as the rest of a no-op task."""

    __slots__ = ("_info", "_spec", "config", "node", "started", "task")

    def __init__(self, task: NodeTask, started: float, node: str | None) -> None:
        self.task = task
        self.started = started
        self.node = node
        self.config: Any = None  # the spec's config, once known
        self._spec: TaskSpec | None = None
        self._info: TaskInfo | None = None

    @property
    def spec(self) -> TaskSpec:
        if self._spec is None:
            task = self.task
            self._spec = TaskSpec(
                id=ID(task.session, task.id),
                task_type=task.task_type,
                config=self.config,
                inputs=[TaskSpecInput(ID(task.session, i.id), i.label) for i in task.inputs],
                outputs=[ID(task.session, o.id) for o in task.outputs],
                resources={"cpus": task.cpus},
                user=dict(task.user),
                name=task.name or None,
            )
        return self._spec

    @property
    def info(self) -> TaskInfo:
        if self._info is None:
            self._info = TaskInfo(
                start_time=datetime.fromtimestamp(self.started, UTC),
                governor=self.node,
                node=self.node,
            )
        return self._info

    @property
    def info_made(self) -> TaskInfo | None:
        """The info if anything asked for it (None: nothing was added to it)."""
        return self._info


def _describe(exc: BaseException) -> str:
    # The user's frames, without the ones of this module: they are noise to them.
    tb = traceback.TracebackException.from_exception(exc)
    frames = [f for f in tb.stack if not f.filename.endswith(os.path.join("graph", "execution.py"))]
    tb.stack = traceback.StackSummary.from_list(frames)
    return "".join(tb.format()).rstrip()


_Builtin = Callable[[Any, LabeledList[DataInstance], Path, Path, threading.Event | None], Any]

_BUILTINS: dict[str, _Builtin] = {
    "concat": lambda c, i, out, s, cancel: builtins.concat(i, output_dir=out),
    "sleep": lambda c, i, out, s, cancel: builtins.sleep(c, i, output_dir=out, cancel=cancel),
    "load": lambda c, i, out, s, cancel: builtins.load(c, output_dir=out),
    "load_dir": lambda c, i, out, s, cancel: builtins.load_dir(c, output_dir=out),
    "store": lambda c, i, out, s, cancel: builtins.store(c, i),
    "make_directory": lambda c, i, out, s, cancel: builtins.make_directory(c, i, output_dir=out),
    "slice_directory": lambda c, i, out, s, cancel: builtins.slice_directory(
        c, i, output_dir=out, scratch_dir=s
    ),
    "execute": lambda c, i, out, s, cancel: execute(
        c, i, output_dir=out, scratch_dir=s, cancel=cancel
    ),
}


def _run(
    task: NodeTask,
    described: _Description,
    inputs: LabeledList[DataInstance],
    scratch: str,
    cancel: threading.Event | None,
    staged: list[bool],
) -> list[DataInstance]:
    if task.task_type == "python":
        config = pickle.loads(task.config)
        described.config = {"name": config.get("name")}
        fn = _functions.get(task.function) if task.function else None
        return _run_python(config, fn, described, inputs, f"{scratch}{os.sep}outputs", staged)
    out_dir = Path(scratch) / "outputs"
    out_dir.mkdir(parents=True)
    runner = _BUILTINS.get(task.task_type)
    if runner is None:
        raise TaskFailed(f"unknown task type {task.task_type!r}")
    config = pickle.loads(task.config)
    produced = runner(config, inputs, out_dir, Path(scratch), cancel)
    return list(produced)


def _run_python(
    config: dict[str, Any],
    fn: Any,
    described: _Description,
    inputs: LabeledList[DataInstance],
    out_dir: str,
    staged: list[bool],
) -> list[DataInstance]:
    if fn is None:
        fn = _functions.get_inline(config["function"])
    params = config.get("inputs", {})
    values: list[Any] = []
    for index, instance in enumerate(inputs):
        label = inputs.get_label(index)
        param = params.get(label) if label is not None else None
        if param is not None:
            _check_input(instance, param, label)
        load = config.get("auto_load") or (param is not None and param.get("load"))
        values.append(instance.load() if load else instance)
    if values:
        with resolving_inputs(values):
            args, kwargs = serialize.loads(config["args"])  # type: ignore[misc]
    else:
        args, kwargs = serialize.loads(config["args"])  # type: ignore[misc]
    ctx = Context.described_by(described, staging_dir=out_dir, function=fn)
    try:
        returned = fn(ctx, *args, **kwargs)
    finally:
        staged[0] = ctx.staged > 0
    return _python_outputs(returned, config["outputs"])


def _check_input(instance: DataInstance, param: dict[str, Any], label: str) -> None:
    want_type = param.get("data_type", "blob")
    if instance.data_type != want_type:
        raise TaskFailed(
            f"input {label!r} is a {instance.data_type}, but the task wants a {want_type}"
        )
    declared = param.get("content_type")
    if declared is None:
        return
    actual = instance.content_type
    if actual is None:
        # An object without a content type takes the one the function asks for.
        instance.info.content_type = declared
    elif not content_types.is_subtype(actual, declared):
        raise TaskFailed(
            f"input {label!r} has content type {actual!r}, but the task wants {declared!r}"
        )


def _python_outputs(returned: Any, outputs: list[dict[str, Any]]) -> list[DataInstance]:
    if not outputs:
        return []
    if len(outputs) == 1:
        values = [returned]
    elif isinstance(returned, dict):
        labels = [o["label"] for o in outputs]
        missing = [label for label in labels if label not in returned]
        if missing or len(returned) != len(labels):
            raise TaskFailed(
                f"the function returned a dict with keys {sorted(map(str, returned))}, "
                f"but its outputs are labelled {labels}"
            )
        values = [returned[label] for label in labels]
    elif isinstance(returned, tuple | list):
        if len(returned) != len(outputs):
            raise TaskFailed(
                f"the function has {len(outputs)} outputs but returned {len(returned)} values"
            )
        values = list(returned)
    else:
        raise TaskFailed(
            f"the function has {len(outputs)} outputs; return a tuple or a dict of them, "
            f"not {type(returned).__name__}"
        )
    return [_to_instance(v, o) for v, o in zip(values, outputs, strict=True)]


def _to_instance(value: Any, output: dict[str, Any]) -> DataInstance:
    declared = output.get("content_type")
    label = output.get("label") or "output"
    if output.get("encode"):
        data, content_type = content_types.encode(value, output["encode"])
        return DataInstance(data, content_type=content_type)
    if isinstance(value, DataInstance):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return DataInstance(bytes(value), content_type=declared)
    if isinstance(value, str):
        if declared is None or content_types.text_encoding(declared) is None:
            return DataInstance(value.encode("utf-8"), content_type=declared or "text")
        data, content_type = content_types.encode(value, declared)
        return DataInstance(data, content_type=content_type)
    raise TaskFailed(
        f"output {label!r}: the function returned {type(value).__name__}; return bytes, str "
        "or a DataInstance, or declare Output(encode=...) to serialise other values"
    )


def _place_outputs(
    task: NodeTask, produced: list[DataInstance], inline_limit: int, scratch: str
) -> list[tuple[int, int, str | None, bytes | None]]:
    if len(produced) != len(task.outputs):
        raise TaskFailed(
            f"the task made {len(produced)} outputs, not the {len(task.outputs)} declared"
        )
    placed = []
    for instance, out in zip(produced, task.outputs, strict=True):
        what = f"output {out.label!r}" if out.label else "an output"
        if instance.data_type != out.data_type:
            raise TaskFailed(
                f"{what} should be a {out.data_type}, but the task made a {instance.data_type}"
            )
        actual = instance.content_type
        if actual is None:
            actual = out.content_type
        elif not content_types.is_subtype(actual, out.content_type):
            raise TaskFailed(
                f"{what} has content type {actual!r}, not a subtype of the declared "
                f"{out.content_type!r}"
            )
        size = instance.size
        if instance.data_type == "blob" and size <= inline_limit:
            placed.append((out.id, size, actual, instance.get_bytes()))
            continue
        target = Path(out.store_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if instance.path is not None and instance.path.is_relative_to(Path(scratch)):
            os.replace(instance.path, target)  # made by this task: move, do not copy
        else:
            instance.write(target)
        placed.append((out.id, size, actual, None))
    return placed
