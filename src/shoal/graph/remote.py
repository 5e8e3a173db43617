"""``@remote``: Python functions that run as tasks (task type ``"python"``).

Calling a decorated function does not run it; it makes a task in the active
session. The function's first parameter is the execution context (``ctx``); the
others are the call's arguments. Every data object found anywhere in the arguments
(lists, tuples, sets, dicts, attributes of objects) becomes an input of the task, and
on the node it is replaced by the input's :class:`~shoal.graph.DataInstance`.

>>> from shoal.graph.session import Session
>>> from shoal.graph.data_object import blob
>>> class Fake:
...     def open_session(self, name): return 1
...     def close_session(self, session_id): pass
>>> @remote(outputs=("label1", "label2"))
... def fn(ctx, data):
...     return {"label1": b"1", "label2": data.get_bytes()}
>>> with Session(Fake()):
...     t = fn([blob(b"x")])
>>> t.task_type, len(t.inputs), t.outputs.labels
('python', 1, ['label1', 'label2'])

The task's ``config`` is a dict: ``function`` (the cloudpickled function),
``args`` (the cloudpickled ``(args, kwargs)``, data objects in them pickled as
references to the task's inputs: unpickle inside :func:`resolving_inputs`),
``name``, ``inputs`` (per parameter: ``load``, ``content_type``, ``data_type``),
``auto_load``, and ``outputs`` (per output: ``label``, ``content_type``, ``encode``,
``data_type``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import pickle
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from shoal.client import serialize
from shoal.graph.data_object import DataObject
from shoal.graph.exceptions import RainWarning
from shoal.graph.program import Input, Output, _merge_output
from shoal.graph.remote_arguments import (
    DIRECT_INPUTS,
    PICKLED_INPUTS,
    SCALARS,
    direct_inputs,
    find_data_objects,
    input_placeholder,
    resolving_inputs,
)
from shoal.graph.session import Session, active_session
from shoal.graph.task import Task, to_data_object

__all__ = [
    "CALL_KEYWORDS",
    "PICKLE_ARG_SIZE_LIMIT",
    "Remote",
    "RemoteFunction",
    "input_placeholder",
    "remote",
    "resolving_inputs",
]

# Rain raised RainWarning when a pickled argument or function was bigger than this
# (its limit was 256 KiB): the bytes travel in the task's config, not as a data object
# the scheduler knows.
PICKLE_ARG_SIZE_LIMIT = 1024 * 1024

# The keywords a call of a remote function takes for itself (Rain's).
CALL_KEYWORDS = frozenset(("output", "outputs", "name", "session"))


def _apply_auto_encode(outputs: list[Output], auto_encode: str | None) -> list[Output]:
    """Rain's ``auto_encode``: the encoding of every blob output that names none."""
    if auto_encode is None:
        return outputs
    result = []
    for out in outputs:
        if (
            out.data_type == "blob"
            and out.encode is None
            and out.content_type in (None, "", auto_encode)
        ):
            out = dataclasses.replace(out, encode=auto_encode)
        result.append(out)
    return result


def _too_big(name: str, size: int, what: str, depth: int) -> None:
    """Raise :class:`RainWarning` as Rain did, unless the program's warnings filters
    say what to do with one (``depth``: how many frames of shoal's, the caller's
    included, lie above the user's call, which is where the warning points).

    The message begins as Rain's did (code written for Rain matches on it).
    """
    with warnings.catch_warnings():
        # Appended, so the lowest priority: a filter of the program's own that takes
        # RainWarning (pytest.warns, simplefilter("always"/"ignore")) comes first.
        warnings.filterwarnings("error", category=RainWarning, append=True)
        warnings.warn(
            f"Pickled object {name} length {size} > PICKLE_ARG_SIZE_LIMIT="
            f"{PICKLE_ARG_SIZE_LIMIT} ({what}); consider passing the data as a blob()",
            RainWarning,
            stacklevel=depth + 2,  # 1 is this function
        )


def _annotated_outputs(annotation: Any) -> Any:
    """The outputs a return annotation declares, as Rain read them: an :class:`Output`,
    a number (``-> 0``: none), or a tuple or list of labels and Outputs (``-> ("a",
    "b")``). ``None`` for anything else (``-> bytes`` and other type hints)."""
    if isinstance(annotation, Output):
        return annotation
    if isinstance(annotation, int) and not isinstance(annotation, bool):
        return annotation
    if isinstance(annotation, tuple | list) and all(
        isinstance(o, Output | str) for o in annotation
    ):
        return annotation
    return None


def _evaluate_annotation(fn: Callable[..., Any], text: str) -> Any:
    """A return annotation left a string (``from __future__ import annotations``)
    when another annotation of ``fn`` could not be evaluated: evaluated alone."""
    try:
        return eval(text, getattr(fn, "__globals__", {}))
    except Exception:  # a type hint of a name this module cannot see: not outputs
        return None


def _normalize_outputs(outputs: Any) -> list[Output]:
    if outputs is None:
        return [Output("output")]
    if isinstance(outputs, bool):
        raise TypeError(f"outputs is a number, a label, an Output or a list of them: {outputs!r}")
    if isinstance(outputs, int):
        if outputs < 0:
            raise ValueError(f"outputs cannot be negative: {outputs}")
        return [Output() for _ in range(outputs)]
    if isinstance(outputs, str | Output):
        outputs = [outputs]
    result = []
    for out in outputs:
        if isinstance(out, str):
            result.append(Output(out))
        elif isinstance(out, Output):
            result.append(out)
        else:
            raise TypeError(f"an output is a label or an Output, not {out!r}")
    labels = [o.label for o in result if o.label is not None]
    if len(labels) != len(set(labels)):
        raise ValueError(f"duplicate output labels in {labels}")
    return result


class RemoteFunction:
    """A function turned into a task factory by :func:`remote`.

    ``f(*args, **kwargs)`` makes the task; the original is ``f.__wrapped__``.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        outputs: Any = None,
        inputs: dict[str, Input] | None = None,
        auto_load: bool = False,
        auto_encode: str | None = None,
        cpus: int = 1,
        name: str | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        if name is not None and not isinstance(name, str):
            raise TypeError(f"@remote name is a str, not {name!r}")
        self.name = name
        try:
            self.signature = inspect.signature(fn, eval_str=True)
            evaluated = True
        except Exception:  # annotations that cannot be evaluated here
            self.signature = inspect.signature(fn)
            evaluated = False
        params = list(self.signature.parameters.values())
        if not params or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(f"@remote function {fn.__name__} needs the context (ctx) first")
        self.inputs: dict[str, Input] = {}
        for p in params[1:]:
            if isinstance(p.annotation, Input):
                self.inputs[p.name] = p.annotation
        for pname, spec in (inputs or {}).items():
            if pname not in self.signature.parameters or pname == params[0].name:
                raise ValueError(f"@remote inputs: {fn.__name__} has no parameter {pname!r}")
            if not isinstance(spec, Input):
                raise TypeError(f"@remote inputs[{pname!r}] is an Input, not {spec!r}")
            self.inputs[pname] = spec
        if outputs is None:
            ret = self.signature.return_annotation
            if not evaluated and isinstance(ret, str):
                ret = _evaluate_annotation(fn, ret)
            outputs = _annotated_outputs(ret)
        self.auto_encode = auto_encode
        self.outputs = _apply_auto_encode(_normalize_outputs(outputs), auto_encode)
        self.auto_load = bool(auto_load)
        # Rain's keywords of a call (output=, outputs=, name=, session=) are the call's,
        # also when the function takes **kwargs, unless the function has a parameter of
        # that name that can be given by keyword: then it is the function's argument
        # (as it was before these keywords existed here).
        by_keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        named = {p.name for p in params[1:] if p.kind in by_keyword}
        self._call_keywords = frozenset(CALL_KEYWORDS - named)
        self._default_name = name if name is not None else fn.__name__
        # The parameters after ctx when all are plain positional ones: a call that
        # gives each of them positionally needs no Signature.bind (a third of the
        # cost of making a no-op task).
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self._positional: tuple[str, ...] | None = (
            tuple(p.name for p in params[1:])
            if all(p.kind in positional for p in params[1:])
            else None
        )
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
            raise ValueError(f"cpus must be a positive int, not {cpus!r}")
        self.cpus = cpus
        self._function_data: bytes | None = None
        self._config_rest: dict[str, Any] | None = None

    def _call_outputs(self, output: Any, outputs: Any) -> list[Output]:
        """The outputs of one call: the function's, or the call's overrides of them."""
        if output is not None:
            if outputs is not None:
                raise TypeError(f"{self.fn.__name__}(): give output= or outputs=, not both")
            outputs = [output]
        if outputs is None:
            return self.outputs
        if isinstance(outputs, int) and not isinstance(outputs, bool):
            return _apply_auto_encode(_normalize_outputs(outputs), self.auto_encode)
        kept: list[bool] = []
        if isinstance(outputs, list | tuple) and any(o is None for o in outputs):
            # Rain's None in outputs=[...]: this output stays the function's own, so
            # there is one item per output of the function.
            if len(outputs) != len(self.outputs):
                raise ValueError(
                    f"{self.fn.__name__}(): outputs= has {len(outputs)} items, but the "
                    f"function has {len(self.outputs)} outputs (None keeps one of them)"
                )
            kept = [o is None for o in outputs]
            outputs = [p if o is None else o for o, p in zip(outputs, self.outputs, strict=True)]
        given = _normalize_outputs(outputs)
        if len(given) == len(self.outputs):
            merged = [_merge_output(o, p) for o, p in zip(given, self.outputs, strict=True)]
            # _merge_output keeps a program's path; a Python task has no files.
            for i, (o, p) in enumerate(zip(given, self.outputs, strict=True)):
                merged[i] = dataclasses.replace(merged[i], path=None, encode=o.encode or p.encode)
            for i, keep in enumerate(kept):
                if keep:
                    merged[i] = self.outputs[i]
            return merged
        return _apply_auto_encode(given, self.auto_encode)

    def _call_options(
        self, kwargs: dict[str, Any]
    ) -> tuple[list[Output], str | None, Session | None]:
        """Take the call's own keywords out of ``kwargs``: its outputs, task name and
        session (checked)."""
        output = kwargs.pop("output", None) if "output" in self._call_keywords else None
        outputs = kwargs.pop("outputs", None) if "outputs" in self._call_keywords else None
        name = kwargs.pop("name", None) if "name" in self._call_keywords else None
        session = kwargs.pop("session", None) if "session" in self._call_keywords else None
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{self.fn.__name__}(): name= is a str, not {name!r}")
        if session is not None and not isinstance(session, Session):
            raise TypeError(f"{self.fn.__name__}(): session= is a Session, not {session!r}")
        return self._call_outputs(output, outputs), name, session

    def __call__(self, *args: Any, **kwargs: Any) -> Task:
        """Make the task in the active session.

        Rain's keywords of a call, taken by the call unless the function has a
        parameter of that name: ``name=`` names the task (default: the ``@remote``
        name, else the function's), ``session=`` makes it in that session instead of
        the active one, and ``output=``/``outputs=`` replace its outputs for this
        task: a number, labels or :class:`Output` s; as many as the function has are
        merged with its own (what they leave unset comes from there, and ``None``
        keeps one as it is), another number replaces them.
        """
        call_outputs = self.outputs
        name = session = None
        if kwargs and not self._call_keywords.isdisjoint(kwargs):
            call_outputs, name, session = self._call_options(kwargs)
        arguments: Iterable[tuple[str, Any]]
        if not kwargs and self._positional is not None and len(args) == len(self._positional):
            arguments = zip(self._positional, args, strict=True)
        else:
            arguments = list(self._bind(args, kwargs).arguments.items())[1:]
        # Plain values and data objects only, none inside a container (the common
        # no-op, leaf and chain case): nothing to walk, and the standard pickler
        # does what cloudpickle would, several times faster.
        plain = all(type(a) in SCALARS or isinstance(a, DIRECT_INPUTS) for a in args) and all(
            type(v) in SCALARS or isinstance(v, DIRECT_INPUTS) for v in kwargs.values()
        )
        if plain:
            found, kinds = direct_inputs(args, kwargs), set()
        else:
            found, kinds = find_data_objects((args, kwargs))
        labels: dict[int, str] = {}
        for pname, value in arguments:
            if isinstance(value, DataObject | Task):
                obj = to_data_object(value)
                labels.setdefault(id(obj), pname)
                if pname in self.inputs:
                    self.inputs[pname].check(obj, pname)
        if self._function_data is None:
            # Pickled once: thousands of calls ship the same bytes, which the
            # workers unpickle once too. Checked first: a function too big to send
            # raises at every call.
            function_data = serialize.dumps(self.fn)
            if len(function_data) > PICKLE_ARG_SIZE_LIMIT:
                _too_big(self.fn.__name__, len(function_data), "the function itself", 1)
            self._function_data = function_data
        function_data = self._function_data
        token = PICKLED_INPUTS.set(found)
        try:
            if plain:
                args_data = pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
            else:
                args_data = serialize.dumps((args, kwargs), types=kinds)
            if len(args_data) > PICKLE_ARG_SIZE_LIMIT:
                self._check_big_arguments(self._bind(args, kwargs), kinds)
        finally:
            PICKLED_INPUTS.reset(token)
        if call_outputs is self.outputs:
            # The same for every call that keeps the function's outputs: made once.
            if self._config_rest is None:
                self._config_rest = self._describe(call_outputs)
            rest = self._config_rest
        else:
            rest = self._describe(call_outputs)
        config = {"function": function_data, "args": args_data, **rest}
        if session is None:
            session = active_session()
        outs = [DataObject._of_output(o, session) for o in call_outputs]
        task_inputs = [(labels.get(id(obj)), obj) for obj in found]
        if name is None:
            name = self._default_name
        return Task._of_parts("python", config, task_inputs, outs, name, self.cpus, session)

    def _describe(self, call_outputs: list[Output]) -> dict[str, Any]:
        """The part of a task's config that does not depend on its arguments."""
        return {
            "name": self.fn.__qualname__,
            "inputs": {
                pname: {"load": i.load, "content_type": i.content_type, "data_type": i.data_type}
                for pname, i in self.inputs.items()
            },
            "auto_load": self.auto_load,
            "outputs": [
                {
                    "label": o.label,
                    "content_type": o.effective_content_type,
                    "encode": o.encode,
                    "data_type": o.data_type,
                }
                for o in call_outputs
            ],
        }

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.fn.__name__}(): {exc}") from None

    def _check_big_arguments(self, bound: inspect.BoundArguments, kinds: set[type]) -> None:
        # Only when the whole is too big: name the arguments that make it so.
        big = []
        for pname, value in list(bound.arguments.items())[1:]:
            try:
                size = len(serialize.dumps(value, types=kinds))
            except Exception:  # an argument that pickles only with the others
                continue
            if size > PICKLE_ARG_SIZE_LIMIT:
                big.append(pname)
        total = len(serialize.dumps((bound.args[1:], bound.kwargs), types=kinds))
        if total <= PICKLE_ARG_SIZE_LIMIT:
            return
        names = ", ".join(big) if big else "arguments"
        what = f"argument{'s' if len(big) != 1 else ''} {', '.join(big)}".rstrip()
        _too_big(names, total, f"{what} of {self.fn.__qualname__}", 2)

    def __repr__(self) -> str:
        return f"<remote {self.fn.__qualname__}>"


def remote(
    fn: Callable[..., Any] | None = None,
    *,
    outputs: Any = None,
    inputs: dict[str, Input] | None = None,
    auto_load: bool = False,
    auto_encode: str | None = None,
    cpus: int = 1,
    name: str | None = None,
) -> Any:
    """Turn a function ``fn(ctx, ...)`` into a task factory; ``@remote`` or ``@remote(...)``.

    ``outputs``: ``None`` (one output), a number, a label, an :class:`Output`, or a
    list of labels/Outputs. ``inputs``: ``{param: Input(...)}``; parameters annotated
    with an ``Input`` are configured the same way, and a return annotation of Output(s)
    sets ``outputs``. ``auto_load``: pass ``load()``-ed values instead of data
    instances. ``auto_encode``: the ``encode=`` of every output that names none.
    ``cpus``: the cpus reserved for the task. ``name``: the name of its tasks (default:
    the function's name). A call whose pickled arguments (or function) are over
    ``PICKLE_ARG_SIZE_LIMIT`` (1 MiB) raises :class:`~shoal.graph.exceptions.RainWarning`,
    as in Rain (a ``warnings`` filter for it may make it only a warning).

    >>> @remote(outputs=(Output(encode="pickle"), Output(encode="json")))
    ... def fn7(ctx):
    ...     return ([1, 2, 3], {"x": 123})
    >>> [o.effective_content_type for o in fn7.outputs]
    ['pickle', 'json']
    """

    def decorate(f: Callable[..., Any]) -> RemoteFunction:
        return RemoteFunction(
            f,
            outputs=outputs,
            inputs=inputs,
            auto_load=auto_load,
            auto_encode=auto_encode,
            cpus=cpus,
            name=name,
        )

    if fn is not None:
        if not callable(fn):
            raise TypeError("use @remote or @remote(outputs=..., ...) with keyword arguments")
        return decorate(fn)
    return decorate


Remote = RemoteFunction  # Rain's name of the class
