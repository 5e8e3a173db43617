"""The built-in tasks, as the user creates them: ``tasks.Concat((a, b))`` and so on.

Each function makes a :class:`~shoal.graph.task.Task` in the active session (or in
the one given as ``session=``, as Rain's built-ins took it) whose
``spec.config`` is the node-side config dataclass of :mod:`shoal.graph.builtins`
(:class:`~shoal.graph.builtins_execute.ExecuteConfig` for Execute) and whose
``task_type`` is the built-in's name there (``"concat"``, ``"sleep"``, ``"execute"``...).

>>> from shoal.graph.session import Session
>>> from shoal.graph.data_object import blob
>>> class Fake:
...     def open_session(self, name): return 1
...     def close_session(self, session_id): pass
>>> with Session(Fake()):
...     t1 = Sleep(blob("world!"), 1.0)
...     t2 = Concat((blob("Hello "), t1))
>>> t1.config, t2.task_type, len(t2.inputs)
(SleepConfig(delay=1.0), 'concat', 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shoal.graph import content_types
from shoal.graph.builtins import (
    LoadConfig,
    LoadDirConfig,
    MakeDirectoryConfig,
    SleepConfig,
    SliceDirectoryConfig,
    StoreConfig,
)
from shoal.graph.builtins_execute import (
    ArgInput,
    ArgOutput,
    ExecuteConfig,
    InputMapping,
    OutputMapping,
)
from shoal.graph.data_object import DataObject
from shoal.graph.program import Input, Output
from shoal.graph.session import Session
from shoal.graph.task import Task, to_data_object

# Rain 0.3's function names, for graphs written before 0.4: attributes of this
# module, left out of __all__ so that a star import neither adds names 0.4 did not
# have nor hides the builtin open().
from shoal.graph.tasks_legacy import concat as concat
from shoal.graph.tasks_legacy import execute as execute
from shoal.graph.tasks_legacy import export as export
from shoal.graph.tasks_legacy import open as open
from shoal.graph.tasks_legacy import sleep as sleep

__all__ = [
    "Concat",
    "Execute",
    "Load",
    "LoadDir",
    "MakeDirectory",
    "Sleep",
    "SliceDirectory",
    "Store",
    "make_directory",
]

ObjectLike = DataObject | Task


def _output_spec(output: Output | str | None, data_type: str, what: str) -> Output | None:
    """Rain's ``output=`` of a built-in (an :class:`Output`, or its label), checked to
    be of ``data_type`` with Rain's ``TypeError``; ``None`` when not given."""
    if output is None:
        return None
    if isinstance(output, str):
        return Output(output, data_type=data_type)
    if not isinstance(output, Output):
        raise TypeError(f"{what} output= is an Output or a label, not {output!r}")
    if data_type == "dir":
        output.expect_dir()
    else:
        output.expect_blob()
    return output


def _content_type(output: Output | None, content_type: str | None, what: str) -> str | None:
    """The content type given by ``content_type=`` or by the ``output=``; not both."""
    declared = None if output is None else output.effective_content_type
    if (
        declared is not None
        and content_type is not None
        and content_types.validate(content_type) != declared
    ):
        raise ValueError(
            f"{what}: content_type={content_type!r} conflicts with the output's {declared!r}"
        )
    return declared if declared is not None else content_type


def _label(output: Output | None) -> str:
    # shoal's label of a built-in's only output, unless output= gives one.
    return "output" if output is None or output.label is None else output.label


def Concat(
    inputs: Iterable[ObjectLike], *, name: str | None = None, session: Session | None = None
) -> Task:
    """Concatenate the blobs ``inputs`` into one blob (in ``session``, else the active one).

    >>> # tasks.Concat([a, b], name="my-plain-name")
    """
    objs = [to_data_object(i) for i in inputs]
    for obj in objs:
        if obj.data_type != "blob":
            raise ValueError(f"Concat takes blobs, not {obj!r}")
    output = DataObject("output", session=session)
    return Task("concat", None, objs, [output], name=name, session=session)


def Sleep(
    input: ObjectLike,
    timeout: float | None = None,
    *,
    delay: float | None = None,
    cpus: int = 1,
    name: str | None = None,
    session: Session | None = None,
) -> Task:
    """Forward ``input`` as the output after ``timeout`` seconds (Rain's name; shoal's
    ``delay=`` is the same).

    >>> # tasks.Sleep(b, 1.0); tasks.Sleep(b, timeout=1.0)
    """
    if timeout is None:
        if delay is None:
            raise TypeError("Sleep needs the seconds to wait: timeout (or delay)")
        timeout = delay
    elif delay is not None:
        raise TypeError("Sleep takes timeout or delay, not both")
    obj = to_data_object(input)
    output = DataObject(
        "output", data_type=obj.data_type, content_type=obj.content_type, session=session
    )
    config = SleepConfig(timeout)
    return Task("sleep", config, [obj], [output], name=name, cpus=cpus, session=session)


def Load(
    path: str,
    output: Output | str | None = None,
    *,
    content_type: str | None = None,
    name: str | None = None,
    session: Session | None = None,
) -> Task:
    """A blob with the content of the file at the absolute ``path`` on the node.

    ``output`` (Rain's) is the :class:`Output` (or label) of that blob, a way to give
    its label and content type; ``content_type=`` gives the content type alone.

    >>> # tasks.Load("/path/to/data"); tasks.Load(path, Output("data", content_type="json"))
    """
    spec = _output_spec(output, "blob", "Load")
    content_type = _content_type(spec, content_type, "Load")
    config = LoadConfig(path, content_type)
    out = DataObject(_label(spec), content_type=content_type, session=session)
    return Task("load", config, [], [out], name=name, session=session)


def LoadDir(
    path: str,
    output: Output | str | None = None,
    *,
    name: str | None = None,
    session: Session | None = None,
) -> Task:
    """A directory object with the content of the directory ``path`` on the node;
    ``output`` (Rain's) is its :class:`OutputDir` (or label).

    >>> # tasks.LoadDir("/path/to/dir")
    """
    spec = _output_spec(output, "dir", "LoadDir")
    out = DataObject(_label(spec), data_type="dir", session=session)
    return Task("load_dir", LoadDirConfig(path), [], [out], name=name, session=session)


def Store(
    input: ObjectLike,
    path: str,
    *,
    overwrite: bool = False,
    name: str | None = None,
    session: Session | None = None,
) -> Task:
    """Write ``input`` to the absolute ``path`` on the node that runs the task; no outputs.

    >>> # tasks.Store(result, "/path/to/result")
    """
    config = StoreConfig(path, overwrite)
    return Task("store", config, [to_data_object(input)], [], name=name, session=session)


def make_directory(
    pairs: Iterable[tuple[str, ObjectLike]] | Mapping[str, ObjectLike],
) -> list[tuple[str, DataObject]]:
    """Check ``(path, object)`` pairs (or a ``{path: object}`` dict) for
    :func:`MakeDirectory`; single-output tasks become their outputs.
    (``MakeDirectory`` takes the pairs with or without this.)

    >>> # tasks.MakeDirectory(tasks.make_directory([("myfile.txt", data1), ("adir", d)]))
    """
    if isinstance(pairs, Mapping):
        pairs = list(pairs.items())
    result = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(
                "MakeDirectory takes (path, data object) pairs or a {path: data object} "
                f"dict, not {pair!r}"
            )
        path, obj = pair
        if not isinstance(path, str):
            raise TypeError(f"a MakeDirectory path is a str, not {path!r}")
        result.append((path, to_data_object(obj)))
    return result


def MakeDirectory(
    paths: Iterable[tuple[str, ObjectLike]] | Mapping[str, ObjectLike],
    *,
    name: str | None = None,
    session: Session | None = None,
) -> Task:
    """A directory object with each object at its path (blobs as files, dirs as subdirs):
    ``(path, object)`` pairs or, as Rain also took, a ``{path: object}`` dict.

    >>> # tasks.MakeDirectory([("myfile.txt", data1), ("a/deep/path/x", data2)])
    >>> # tasks.MakeDirectory({"myfile.txt": data1, "a/deep/path/x": data2})
    """
    pairs = make_directory(paths)
    config = MakeDirectoryConfig(tuple(p for p, _ in pairs))
    output = DataObject("output", data_type="dir", session=session)
    return Task(
        "make_directory", config, [o for _, o in pairs], [output], name=name, session=session
    )


def SliceDirectory(
    input: ObjectLike,
    path: str,
    output: Output | str | None = None,
    *,
    content_type: str | None = None,
    name: str | None = None,
    session: Session | None = None,
) -> Task:
    """A file (a blob) or, with ``path`` ending in ``/``, a subdirectory of a dir object.

    ``output`` (Rain's) is the :class:`Output` (a file) or :class:`OutputDir` (a
    subdirectory), or the label, of the result; ``TypeError`` if it is of the other kind.

    >>> # tasks.SliceDirectory(d2, "a/deep/path/x"); tasks.SliceDirectory(d2, "a/deep/")
    """
    obj = to_data_object(input)
    if obj.data_type != "dir":
        raise ValueError(f"SliceDirectory takes a directory object, not {obj!r}")
    data_type = "dir" if path.endswith("/") else "blob"
    spec = _output_spec(output, data_type, "SliceDirectory")
    if data_type == "blob":
        content_type = _content_type(spec, content_type, "SliceDirectory")
    config = SliceDirectoryConfig(path, content_type)
    if data_type == "dir":
        out = DataObject(_label(spec), data_type="dir", session=session)
    else:
        out = DataObject(_label(spec), content_type=content_type, session=session)
    return Task("slice_directory", config, [obj], [out], name=name, session=session)


# --- Execute --------------------------------------------------------------------------


def _output_mapping(out: Output | str, cls: type[OutputMapping], what: str) -> OutputMapping:
    if isinstance(out, str):
        return cls(out)
    if not isinstance(out, Output):
        raise TypeError(f"{what} is a str or an Output, not {out!r}")
    label = out.label if out.label is not None else out.path
    if label is None:
        raise ValueError(f"{what} needs a label or a path")
    return cls(label, out.path, out.effective_content_type, out.data_type)


def Execute(
    args: str | Sequence[Any],
    stdout: bool | str | Output | None = None,
    stdin: ObjectLike | Input | None = None,
    input_paths: Sequence[Input | ObjectLike] = (),
    output_paths: Sequence[Output | str] = (),
    shell: bool = False,
    cpus: int = 1,
    *,
    name: str | None = None,
    session: Session | None = None,
) -> Task:
    """Run an external program in a fresh working directory on a node.

    ``args`` is a string (split shell-like, or run by the shell with ``shell=True``)
    or a list of strings, data objects (mapped to a file whose name is put in the
    argv), :class:`Input` (mapped at its path, which is put in the argv) and
    :class:`Output` (its path is put in the argv and the file becomes an output).
    ``input_paths`` maps Inputs without putting them in the argv (a bare data object
    or task there is, as in Rain, ``Input(its label, dataobj=it)``: mapped at a path
    named by its label); ``output_paths``
    (str or Output) are files the program leaves; ``stdin`` is an object or Input fed
    to the program; ``stdout`` is ``True`` (output ``"stdout"``), a label or an Output
    (without path). Outputs come in the order: argv Outputs, ``output_paths``, stdout.
    The parameters up to ``cpus`` may be given by position, in Rain's order.

    >>> # tasks.Execute(["grep", "rain", data], stdout=True)
    >>> # tasks.Execute("wget URL", output_paths=[Output("index", path="index.html")])
    >>> # tasks.Execute(["tee", Output("output1")], stdout="output2", stdin=data)
    """
    inputs: list[tuple[str | None, DataObject]] = []

    def add(value: ObjectLike | Input, what: str) -> tuple[str | int, Input | None]:
        spec: Input | None = None
        if isinstance(value, Input):
            spec = value
            if value.dataobj is None:
                raise ValueError(
                    f"{what}: Input {value.label!r} has no dataobj "
                    "(Inputs without data are for Program templates)"
                )
            obj = to_data_object(value.dataobj)
            value.check(obj)
            label = value.label
        else:
            obj, label = to_data_object(value), None
        if label is not None and any(label == existing for existing, _ in inputs):
            raise ValueError(f"Execute has two inputs labelled {label!r}")
        inputs.append((label, obj))
        return (label if label is not None else len(inputs) - 1), spec

    if isinstance(args, str):
        config_args: str | tuple[Any, ...] = args
    elif isinstance(args, Sequence):
        items: list[Any] = []
        for a in args:
            if isinstance(a, str):
                items.append(a)
            elif isinstance(a, int | float) and not isinstance(a, bool):
                items.append(str(a))
            elif isinstance(a, Output):
                items.append(_output_mapping(a, ArgOutput, "an Output argument"))
            elif isinstance(a, DataObject | Task | Input):
                ref, spec = add(a, "an argument")
                if spec is None:
                    items.append(ArgInput(ref))
                else:
                    items.append(ArgInput(ref, spec.path, spec.write))
            else:
                raise TypeError(
                    f"an Execute argument is a str, data object, Input or Output, not {a!r}"
                )
        config_args = tuple(items)
    else:
        raise TypeError(f"Execute args are a str or a list, not {type(args).__name__}")

    mappings = []
    for i in input_paths:
        if isinstance(i, DataObject | Task):
            obj = to_data_object(i)
            # Rain's Input for a bare object: its label, which is also its path; one
            # without a label gets a path of its own.
            path = None if obj.label is not None else f"input-{obj.id.id}"
            i = Input(obj.label, path, dataobj=obj, data_type=obj.data_type)
        elif not isinstance(i, Input):
            raise TypeError(f"input_paths are Inputs or data objects, not {i!r}")
        ref, _ = add(i, "input_paths")
        mappings.append(InputMapping(ref, i.path, i.write))
    outputs = [_output_mapping(o, OutputMapping, "an output_paths item") for o in output_paths]

    stdin_ref: str | int | None = None
    if stdin is not None:
        stdin_ref, _ = add(stdin, "stdin")

    stdout_mapping: OutputMapping | None = None
    if stdout is True:
        stdout_mapping = OutputMapping("stdout")
    elif isinstance(stdout, str):
        stdout_mapping = OutputMapping(stdout)
    elif isinstance(stdout, Output):
        if stdout.path is not None:
            raise ValueError("stdout=Output(...) takes no path")
        stdout_mapping = OutputMapping(
            stdout.label or "stdout", content_type=stdout.effective_content_type
        )
    elif stdout not in (None, False):
        raise TypeError(f"stdout is True, a label or an Output, not {stdout!r}")

    config = ExecuteConfig(
        config_args,
        shell=shell,
        input_paths=tuple(mappings),
        output_paths=tuple(outputs),
        stdin=stdin_ref,
        stdout=stdout_mapping,
        cpus=cpus,
    )
    out_objects = [
        DataObject(
            m.label,
            data_type=m.data_type,
            content_type=content_types.validate(m.content_type),
            session=session,
        )
        for m in config.outputs()
    ]
    return Task("execute", config, inputs, out_objects, name=name, cpus=cpus, session=session)
