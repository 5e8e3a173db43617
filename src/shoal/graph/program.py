"""``Input``/``Output`` (and ``InputDir``/``OutputDir``) configure the inputs and
outputs of ``tasks.Execute`` and of ``@remote`` functions; ``Program`` is a reusable
``Execute`` template.

>>> from shoal.graph.session import Session
>>> from shoal.graph.data_object import blob
>>> class Fake:
...     def open_session(self, name): return 1
...     def close_session(self, session_id): pass
>>> rain_grep = Program(["grep", "rain", Input("my_input", path="my_file")], stdout=True)
>>> with Session(Fake()):
...     task = rain_grep(my_input=blob(b"It is\\nrainy day\\n"))
>>> task.config.args
('grep', 'rain', ArgInput(input='my_input', path='my_file', write=False))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shoal.graph import content_types
from shoal.graph.attributes import DataType

if TYPE_CHECKING:
    from shoal.graph.data_object import DataObject
    from shoal.graph.task import Task

__all__ = ["Input", "InputBase", "InputDir", "Output", "OutputBase", "OutputDir", "Program"]


@dataclass(frozen=True)
class Input:
    """An input: its ``label``, the ``path`` it is mapped at in the working directory
    (default: the label), the data object (``dataobj``, a single-output task also
    does), ``write`` for a writable copy instead of a read-only link, the expected
    ``content_type``, ``load`` (remote functions: pass the loaded value) and a
    ``size_hint`` for the scheduler. :class:`InputDir` is the same for a directory.

    >>> Input("my_label", path="myfile").path
    'myfile'
    """

    label: str | None = None
    path: str | None = None
    dataobj: Any = None
    write: bool = False
    content_type: str | None = None
    load: bool | None = None
    size_hint: float | None = None
    data_type: str = "blob"

    def __post_init__(self) -> None:
        if self.label is not None and not isinstance(self.label, str):
            raise TypeError(f"Input label is a str, not {self.label!r}")
        if isinstance(self.data_type, DataType):
            object.__setattr__(self, "data_type", self.data_type.value)
        if self.data_type not in ("blob", "dir"):
            raise ValueError(f"Input data_type is 'blob' or 'dir', not {self.data_type!r}")
        content_types.validate(self.content_type)

    def check(self, obj: DataObject, name: str | None = None) -> None:
        """Raise ``ValueError`` if ``obj`` does not fit (data type, content type).

        ``name`` names the input in the message when it has no label (a parameter).
        """
        name = self.label if self.label is not None else name
        if obj.data_type != self.data_type:
            kind = "InputDir" if self.data_type == "dir" else "Input"
            raise ValueError(f"{kind} {name!r} expects a {self.data_type}, got {obj!r}")
        declared = content_types.validate(self.content_type)
        if (
            declared is not None
            and obj.content_type is not None
            and not content_types.is_subtype(obj.content_type, declared)
        ):
            raise ValueError(
                f"input {name!r} expects content type {declared!r}, "
                f"but {obj!r} has {obj.content_type!r}"
            )

    def with_dataobj(self, obj: DataObject | Task) -> Input:
        """A copy with ``dataobj`` set."""
        return dataclasses.replace(self, dataobj=obj)


def InputDir(
    label: str | None = None,
    path: str | None = None,
    dataobj: Any = None,
    write: bool = False,
    size_hint: float | None = None,
) -> Input:
    """An :class:`Input` of a directory object.

    >>> InputDir("data").data_type
    'dir'
    """
    return Input(label, path, dataobj, write, None, None, size_hint, "dir")


@dataclass(frozen=True)
class Output:
    """An output: its ``label``, the ``path`` of the file the program leaves (default:
    the label), its ``content_type``, ``encode`` (remote functions: serialise the
    returned value by this content type, which becomes the content type) and a
    ``size_hint``. :class:`OutputDir` is the same for a directory.

    >>> Output("index", path="index.html").target
    'index.html'
    >>> Output(encode="json").effective_content_type
    'json'
    """

    label: str | None = None
    path: str | None = None
    content_type: str | None = None
    encode: str | None = None
    size_hint: float | None = None
    data_type: str = "blob"

    def __post_init__(self) -> None:
        if self.label is not None and not isinstance(self.label, str):
            raise TypeError(f"Output label is a str, not {self.label!r}")
        if isinstance(self.data_type, DataType):
            object.__setattr__(self, "data_type", self.data_type.value)
        if self.data_type not in ("blob", "dir"):
            raise ValueError(f"Output data_type is 'blob' or 'dir', not {self.data_type!r}")
        ct, enc = content_types.validate(self.content_type), content_types.validate(self.encode)
        if ct is not None and enc is not None and ct != enc:
            raise ValueError(f"Output content_type {ct!r} conflicts with encode={enc!r}")
        if self.data_type == "dir" and (enc is not None or ct not in (None, "dir")):
            raise ValueError("OutputDir has no content type or encoding")

    @property
    def target(self) -> str | None:
        """The path, or the label when no path is given."""
        return self.path if self.path is not None else self.label

    @property
    def effective_content_type(self) -> str | None:
        """``content_type``, else ``encode``."""
        return content_types.validate(self.content_type or self.encode)

    def expect_blob(self) -> None:
        """Raise ``TypeError`` unless this is the output of a blob (Rain's check)."""
        if self.data_type != "blob":
            raise TypeError(f"a blob output expected, not {self!r}")

    def expect_dir(self) -> None:
        """Raise ``TypeError`` unless this is the output of a directory (Rain's check)."""
        if self.data_type != "dir":
            raise TypeError(f"a directory output expected, not {self!r}")


def OutputDir(
    label: str | None = None, path: str | None = None, size_hint: float | None = None
) -> Output:
    """An :class:`Output` of a directory object.

    >>> OutputDir("rain").data_type
    'dir'
    """
    return Output(label, path, None, None, size_hint, "dir")


# Rain's base classes of Input/InputDir and Output/OutputDir: here InputDir and
# OutputDir make Inputs and Outputs of data_type "dir", so the bases are the classes
# themselves (isinstance(InputDir(), InputBase) holds, as in Rain).
InputBase = Input
OutputBase = Output


def _merge_output(override: Output | str | None, proto: Output) -> Output:
    """``override`` in the place of ``proto``: what it leaves unset comes from ``proto``.

    The file stays where the program leaves it (``proto``'s path, else its label)
    unless the override gives a path of its own.
    """
    if override is None:
        return proto
    if isinstance(override, str):
        override = Output(override)
    if not isinstance(override, Output):
        raise TypeError(f"an output override is a label or an Output, not {override!r}")
    if override.data_type != proto.data_type:
        raise ValueError(
            f"output {proto.label!r} is a {proto.data_type}, not a {override.data_type}"
        )
    return Output(
        label=override.label if override.label is not None else proto.label,
        path=override.path if override.path is not None else proto.target,
        content_type=override.effective_content_type or proto.effective_content_type,
        size_hint=override.size_hint if override.size_hint is not None else proto.size_hint,
        data_type=proto.data_type,
    )


class Program:
    """A template of ``tasks.Execute``: the same arguments, with :class:`Input` s (without
    ``dataobj``) where the data objects go; a plain string stands for ``Input(label)``
    in ``stdin`` and ``input_paths``. Calling it with ``label=obj`` for each input
    label makes the task in the active session; ``name=`` names that task, and
    ``output=``/``outputs=`` replace the program's outputs (in the order argv
    Outputs, ``output_paths``, stdout) by labels or :class:`Output` s, which take
    what they leave unset (the file's path above all) from the program's. The
    parameters up to ``cpus`` may be given by position, in Rain's order;
    ``input_files``/``output_files`` are Rain 0.3's names of the path lists.

    >>> # prog = Program("a-program", stdin="data"); task = prog(data=obj, name="run-1")
    """

    def __init__(
        self,
        args: str | list[Any] | tuple[Any, ...],
        stdout: bool | str | Output | None = None,
        stdin: Input | str | None = None,
        input_paths: list[Input | str] | tuple[Input | str, ...] = (),
        output_paths: list[Output | str] | tuple[Output | str, ...] = (),
        shell: bool = False,
        cpus: int = 1,
        *,
        name: str | None = None,
        input_files: list[Input | str] | tuple[Input | str, ...] | None = None,
        output_files: list[Output | str] | tuple[Output | str, ...] | None = None,
    ) -> None:
        # Rain 0.3 named the path lists input_files/output_files.
        if input_files is not None:
            if input_paths:
                raise TypeError("Program takes input_paths or input_files, not both")
            input_paths = input_files
        if output_files is not None:
            if output_paths:
                raise TypeError("Program takes output_paths or output_files, not both")
            output_paths = output_files
        self.args = args if isinstance(args, str) else tuple(args)
        self.input_paths = tuple(Input(i) if isinstance(i, str) else i for i in input_paths)
        self.output_paths = tuple(output_paths)
        self.stdin = stdin
        self.stdout = stdout
        self.shell = shell
        self.cpus = cpus
        self.name = name
        inputs = [a for a in self.args if isinstance(a, Input)] if not isinstance(args, str) else []
        inputs += list(self.input_paths)
        if isinstance(stdin, str):
            stdin = self.stdin = Input(stdin)  # Rain's Program(..., stdin="label")
        if stdin is not None:
            if not isinstance(stdin, Input):
                raise TypeError(
                    "Program stdin is an Input or its label (a template has no data objects)"
                )
            inputs.append(stdin)
        self.input_labels: list[str] = []
        for i in inputs:
            if not isinstance(i, Input):
                raise TypeError(f"Program input_paths are Inputs, not {i!r}")
            if i.label is None:
                raise ValueError("every Input of a Program needs a label")
            if i.dataobj is not None:
                raise ValueError(f"Program Input {i.label!r} has a dataobj; pass it at the call")
            if i.label in self.input_labels:
                raise ValueError(f"Program has two Inputs labelled {i.label!r}")
            self.input_labels.append(i.label)
        if not isinstance(args, str):
            for a in self.args:
                if not isinstance(a, str | Input | Output | int | float):
                    raise TypeError(f"Program arguments are str, Input or Output, not {a!r}")

    def _output_slots(self) -> list[Output]:
        slots: list[Output] = []
        if not isinstance(self.args, str):
            slots += [a for a in self.args if isinstance(a, Output)]
        slots += [Output(o) if isinstance(o, str) else o for o in self.output_paths]
        if self.stdout is True:
            slots.append(Output("stdout"))
        elif isinstance(self.stdout, str):
            slots.append(Output(self.stdout))
        elif isinstance(self.stdout, Output):
            slots.append(self.stdout)
        return slots

    def _with_outputs(self, output: Any, outputs: Any) -> tuple[Any, list[Any], Any]:
        """args, output_paths and stdout with the outputs replaced by the overrides."""
        if output is not None:
            if outputs is not None:
                raise TypeError("give output= or outputs=, not both")
            outputs = [output]
        if isinstance(outputs, str | Output):
            outputs = [outputs]
        slots = self._output_slots()
        if len(outputs) != len(slots):
            raise ValueError(
                f"the Program has {len(slots)} output(s), but {len(outputs)} were given"
            )
        merged = iter([_merge_output(o, p) for o, p in zip(outputs, slots, strict=True)])
        args: Any = self.args
        if not isinstance(args, str):
            args = [next(merged) if isinstance(a, Output) else a for a in args]
        output_paths = [next(merged) for _ in self.output_paths]
        stdout: Any = self.stdout
        if stdout not in (None, False):
            out = next(merged)
            stdout = Output(out.label, None, out.content_type, None, out.size_hint)
        return args, output_paths, stdout

    def __call__(
        self,
        *,
        name: str | None = None,
        output: Output | str | None = None,
        outputs: Any = None,
        **objects: DataObject | Task,
    ) -> Task:
        """Make the Execute task, each Input labelled ``l`` getting ``objects[l]``."""
        from shoal.graph.tasks import Execute

        missing = [label for label in self.input_labels if label not in objects]
        extra = sorted(set(objects) - set(self.input_labels))
        if missing or extra:
            raise TypeError(
                f"Program needs exactly the inputs {self.input_labels}; "
                f"missing {missing}, unexpected {extra}"
            )

        def fill(value: Any) -> Any:
            if isinstance(value, Input):
                return value.with_dataobj(objects[value.label])  # type: ignore[index]
            return value

        args: Any = self.args
        output_paths: list[Any] = list(self.output_paths)
        stdout: Any = self.stdout
        if output is not None or outputs is not None:
            args, output_paths, stdout = self._with_outputs(output, outputs)
        args = args if isinstance(args, str) else [fill(a) for a in args]
        return Execute(
            args,
            input_paths=[fill(i) for i in self.input_paths],
            output_paths=output_paths,
            stdin=fill(self.stdin),
            stdout=stdout,
            shell=self.shell,
            cpus=self.cpus,
            name=name if name is not None else self.name,
        )

    def __repr__(self) -> str:
        return f"Program({self.args!r})"
