"""The built-in tasks, as the user creates them: ``tasks.Concat((a, b))`` and so on.

Each function makes a :class:`~shoal.graph.task.Task` in the active session whose
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

from collections.abc import Iterable, Sequence
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
from shoal.graph.task import Task, to_data_object

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


def Concat(inputs: Iterable[ObjectLike], *, name: str | None = None) -> Task:
    """Concatenate the blobs ``inputs`` into one blob.

    >>> # tasks.Concat([a, b], name="my-plain-name")
    """
    objs = [to_data_object(i) for i in inputs]
    for obj in objs:
        if obj.data_type != "blob":
            raise ValueError(f"Concat takes blobs, not {obj!r}")
    return Task("concat", None, objs, [DataObject("output")], name=name)


def Sleep(input: ObjectLike, delay: float, *, cpus: int = 1, name: str | None = None) -> Task:
    """Forward ``input`` as the output after ``delay`` seconds.

    >>> # tasks.Sleep(b, 1.0)
    """
    obj = to_data_object(input)
    output = DataObject("output", data_type=obj.data_type, content_type=obj.content_type)
    return Task("sleep", SleepConfig(delay), [obj], [output], name=name, cpus=cpus)


def Load(path: str, *, content_type: str | None = None, name: str | None = None) -> Task:
    """A blob with the content of the file at the absolute ``path`` on the node.

    >>> # tasks.Load("/path/to/data")
    """
    config = LoadConfig(path, content_type)
    return Task("load", config, [], [DataObject("output", content_type=content_type)], name=name)


def LoadDir(path: str, *, name: str | None = None) -> Task:
    """A directory object with the content of the directory ``path`` on the node.

    >>> # tasks.LoadDir("/path/to/dir")
    """
    output = DataObject("output", data_type="dir")
    return Task("load_dir", LoadDirConfig(path), [], [output], name=name)


def Store(
    input: ObjectLike, path: str, *, overwrite: bool = False, name: str | None = None
) -> Task:
    """Write ``input`` to the absolute ``path`` on the node that runs the task; no outputs.

    >>> # tasks.Store(result, "/path/to/result")
    """
    return Task("store", StoreConfig(path, overwrite), [to_data_object(input)], [], name=name)


def make_directory(pairs: Iterable[tuple[str, ObjectLike]]) -> list[tuple[str, DataObject]]:
    """Check ``(path, object)`` pairs for :func:`MakeDirectory`; single-output tasks
    become their outputs. (``MakeDirectory`` takes the pairs with or without this.)

    >>> # tasks.MakeDirectory(tasks.make_directory([("myfile.txt", data1), ("adir", d)]))
    """
    result = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"MakeDirectory takes (path, data object) pairs, not {pair!r}")
        path, obj = pair
        if not isinstance(path, str):
            raise TypeError(f"a MakeDirectory path is a str, not {path!r}")
        result.append((path, to_data_object(obj)))
    return result


def MakeDirectory(paths: Iterable[tuple[str, ObjectLike]], *, name: str | None = None) -> Task:
    """A directory object with each object at its path (blobs as files, dirs as subdirs).

    >>> # tasks.MakeDirectory([("myfile.txt", data1), ("a/deep/path/x", data2)])
    """
    pairs = make_directory(paths)
    config = MakeDirectoryConfig(tuple(p for p, _ in pairs))
    output = DataObject("output", data_type="dir")
    return Task("make_directory", config, [o for _, o in pairs], [output], name=name)


def SliceDirectory(
    input: ObjectLike, path: str, *, content_type: str | None = None, name: str | None = None
) -> Task:
    """A file (a blob) or, with ``path`` ending in ``/``, a subdirectory of a dir object.

    >>> # tasks.SliceDirectory(d2, "a/deep/path/x"); tasks.SliceDirectory(d2, "a/deep/")
    """
    obj = to_data_object(input)
    if obj.data_type != "dir":
        raise ValueError(f"SliceDirectory takes a directory object, not {obj!r}")
    config = SliceDirectoryConfig(path, content_type)
    if path.endswith("/"):
        output = DataObject("output", data_type="dir")
    else:
        output = DataObject("output", content_type=content_type)
    return Task("slice_directory", config, [obj], [output], name=name)


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
    *,
    input_paths: Sequence[Input] = (),
    output_paths: Sequence[Output | str] = (),
    stdin: ObjectLike | Input | None = None,
    stdout: bool | str | Output | None = None,
    shell: bool = False,
    cpus: int = 1,
    name: str | None = None,
) -> Task:
    """Run an external program in a fresh working directory on a node.

    ``args`` is a string (split shell-like, or run by the shell with ``shell=True``)
    or a list of strings, data objects (mapped to a file whose name is put in the
    argv), :class:`Input` (mapped at its path, which is put in the argv) and
    :class:`Output` (its path is put in the argv and the file becomes an output).
    ``input_paths`` maps Inputs without putting them in the argv; ``output_paths``
    (str or Output) are files the program leaves; ``stdin`` is an object or Input fed
    to the program; ``stdout`` is ``True`` (output ``"stdout"``), a label or an Output
    (without path). Outputs come in the order: argv Outputs, ``output_paths``, stdout.

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
        if not isinstance(i, Input):
            raise TypeError(f"input_paths are Inputs, not {i!r}")
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
        )
        for m in config.outputs()
    ]
    return Task("execute", config, inputs, out_objects, name=name, cpus=cpus)
