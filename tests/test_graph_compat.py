"""Rain 0.4 user code that builds its graph on shoal.graph with only its imports
changed: the call keywords, built-in signatures, output declarations and smaller
names that an audit of Rain's client (python/rain/client, python/rain/common, its
docs' examples and tests) found missing. Graphs are built against the in-memory
fake transport; nothing runs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from graph_fakes import FakeTransport
from shoal.client import serialize
from shoal.graph import (
    DataInstance,
    DataObject,
    DataType,
    Input,
    InputBase,
    InputDir,
    LabeledList,
    Output,
    OutputBase,
    OutputDir,
    Program,
    RainException,
    RainWarning,
    Task,
    blob,
    directory,
    remote,
    tasks,
)
from shoal.graph.builtins import LoadConfig, MakeDirectoryConfig, SleepConfig
from shoal.graph.builtins_execute import InputMapping
from shoal.graph.client import Client
from shoal.graph.remote import PICKLE_ARG_SIZE_LIMIT, resolving_inputs
from shoal.graph.session import GraphError, Session


def call_arguments(task: Task) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` a remote task's function will be called with (inputs as
    their data objects)."""
    with resolving_inputs(list(task.inputs)):
        return serialize.loads(task.config["args"])  # type: ignore[return-value]


# --- 1. name= and session= at a @remote call --------------------------------------------


@remote()
def convert_to_libsvm_format(ctx: Any, data: Any) -> Any:
    return data.get_str()


@pytest.mark.timeout(30)
def test_the_libsvm_example_builds_with_task_names(transport: FakeTransport) -> None:
    # Rain 0.4's docs/guide/examples.rst, "Distributed cross-validation with libsvm".
    train = Program(("svm-train", Input("data"), Output("output")), name="train")
    predict = Program(
        ("svm-predict", Input("testdata"), Input("model"), Output("prediction")),
        stdout=Output("accuracy"),
        name="predict",
    )
    chunk_count = 3
    with Session(transport, "SVM test") as session:
        input_data = tasks.Load("/data/iris.csv", name="prepare/load")
        converted = convert_to_libsvm_format(input_data, name="prepare/convert")
        randomized = tasks.Execute(
            ("sort", "--random-sort", converted), stdout=True, name="prepare/randomize"
        )
        chunks = tasks.Execute(
            ("split", "-d", "-n", f"l/{chunk_count}", randomized),
            output_paths=[f"x{i:02}" for i in range(chunk_count)],
            name="prepare/split",
        ).outputs
        train_sets = [
            tasks.Concat(chunks[:i] + chunks[i + 1 :], name="prepare/concat")
            for i in range(chunk_count)
        ]
        models = [train(data=train_set) for train_set in train_sets]
        predictions = [predict(model=m, testdata=d) for m, d in zip(models, chunks, strict=True)]
        for p in predictions:
            p.outputs["accuracy"].keep()
        session.submit()
    assert converted.name == "prepare/convert" and converted.task_type == "python"
    assert call_arguments(converted) == ((input_data.output,), {})  # name= is not an argument
    (submitted,) = transport.submits
    names = [t.name for t in submitted["tasks"]]
    assert names[:4] == ["prepare/load", "prepare/convert", "prepare/randomize", "prepare/split"]
    assert names.count("prepare/concat") == 3 and names.count("predict") == 3


@pytest.mark.timeout(30)
def test_name_and_session_keywords_with_kwargs_and_with_parameters_of_those_names(
    transport: FakeTransport,
) -> None:
    @remote(name="group/default")
    def takes_kwargs(ctx: Any, x: Any, **kwargs: Any) -> Any:
        return kwargs

    @remote()
    def has_name(ctx: Any, data: Any, name: str = "") -> Any:
        return name

    other = Session(transport, "other")
    with Session(transport, "active") as active:
        data = blob(b"x")
        t = takes_kwargs(data, name="prepare/convert", extra=1)
        # Rain's Remote.__call__ takes name= itself, also from a function with **kwargs.
        assert t.name == "prepare/convert"
        assert call_arguments(t) == ((data,), {"extra": 1})
        assert takes_kwargs(data).name == "group/default"
        # A parameter called "name" keeps its argument, as before these keywords.
        u = has_name(data, name="given")
        assert u.name == "has_name" and call_arguments(u) == ((data,), {"name": "given"})

        # session=: the task and its outputs are made in that session, not the active one.
        v = takes_kwargs(7, session=other, name="elsewhere")
        assert v.session is other and v.output.session is other
        assert other.task_count == 1 and v not in active.new_tasks
        assert call_arguments(v) == ((7,), {})
        with pytest.raises(GraphError, match="another session"):
            takes_kwargs(data, session=other)  # data is in the active session
        with pytest.raises(TypeError, match="name= is a str"):
            takes_kwargs(data, name=3)
        with pytest.raises(TypeError, match="session= is a Session"):
            takes_kwargs(data, session="other")
    other.close()


# --- 2. the built-in tasks' signatures --------------------------------------------------


@pytest.mark.timeout(30)
def test_builtins_take_session_output_and_rains_other_keywords(
    transport: FakeTransport, tmp_path: Path
) -> None:
    (tmp_path / "f.txt").write_text("x")
    other = Session(transport, "other")
    with Session(transport, "active") as active:
        # Every built-in goes to session= when given, whatever session is active.
        with other.bind_only():
            a, b = blob(b"a"), blob(b"b")
            d = directory(tmp_path)
        made = [
            tasks.Concat([a, b], name="c", session=other),
            tasks.Sleep(a, timeout=0.5, session=other),
            tasks.Load("/data/in.json", Output("data", content_type="json"), session=other),
            tasks.LoadDir("/data/dir", OutputDir("tree"), session=other),
            tasks.Store(a, "/data/out", session=other),
            tasks.MakeDirectory({"x.txt": a, "sub/y": b}, session=other),
            tasks.SliceDirectory(d, "f.txt", Output("file", content_type="text"), session=other),
            tasks.SliceDirectory(d, "sub/", OutputDir("sub"), session=other),
            tasks.Execute(["cat", a], True, session=other),
        ]
        assert all(t.session is other for t in made) and active.task_count == 0
        assert all(o.session is other for t in made for o in t.outputs)
        concat, sleep, load, load_dir, _store, make_dir, file_slice, dir_slice, execute = made
        assert concat.name == "c" and sleep.config == SleepConfig(0.5)
        assert load.config == LoadConfig("/data/in.json", "json")
        assert load.outputs.labels == ["data"] and load.output.content_type == "json"
        assert load_dir.outputs.labels == ["tree"] and load_dir.output.data_type == "dir"
        assert make_dir.config == MakeDirectoryConfig(("x.txt", "sub/y"))
        assert make_dir.inputs == [a, b]
        assert file_slice.outputs.labels == ["file"] and file_slice.output.content_type == "text"
        assert dir_slice.output.data_type == "dir"
        assert execute.outputs.labels == ["stdout"]  # stdout given by position

        # Rain's expect_blob()/expect_dir() checks of output=.
        with pytest.raises(TypeError, match="blob output"):
            tasks.Load("/data/in", OutputDir("d"))
        with pytest.raises(TypeError, match="directory output"), other.bind_only():
            tasks.SliceDirectory(d, "sub/", Output("sub"))
        with pytest.raises(ValueError, match="conflicts"):
            tasks.Load("/data/in", Output(content_type="json"), content_type="text")
        # shoal's own spellings still work (in the active session, as objects here are).
        a = blob(b"a")
        assert tasks.Sleep(a, delay=2).config == SleepConfig(2)
        assert tasks.Load("/p", content_type="json").output.content_type == "json"
        assert tasks.MakeDirectory([("x", a)]).config == MakeDirectoryConfig(("x",))

        # Execute: Rain's positional order, and a bare object in input_paths is
        # Input(its label, dataobj=it), mapped at its label.
        produced = tasks.Sleep(a, 1.0)
        ex = tasks.Execute("wc -c output", None, None, [produced], ["count"], False, 2, name="wc")
        assert ex.config.input_paths == (InputMapping("output"),)
        assert ex.inputs["output"] is produced.output
        assert ex.outputs.labels == ["count"] and ex.cpus == 2 and ex.name == "wc"
        unlabelled = tasks.Concat([a]).output
        unlabelled.label = None
        ex2 = tasks.Execute("ls", input_paths=[unlabelled])
        assert ex2.config.input_paths[0].path == f"input-{unlabelled.id.id}"
    other.close()


# --- 3. outputs declared by the return annotation, and None at a call -------------------


@remote()
def declares_none(ctx: Any) -> 0:  # type: ignore[valid-type]
    return None


@remote()
def declares_labels(ctx: Any) -> ("a", "b"):  # type: ignore[valid-type]  # noqa: F821, UP037
    return {"a": b"1", "b": b"2"}


@remote()
def declares_a_mix(
    ctx: Any,
) -> (  # type: ignore[valid-type]
    Output(encode="pickle", label="test_pickle", size_hint=0.1),
    Output(content_type="text-latin2"),
    "out_c",  # noqa: F821, UP037
    "out_d",  # noqa: F821, UP037
):
    return None


@remote()
def type_hinted(ctx: Any, data: Any) -> bytes:
    return b""


@pytest.mark.timeout(30)
def test_outputs_from_return_annotations_and_none_at_a_call(session: Session) -> None:
    assert len(declares_none().outputs) == 0
    assert declares_labels().outputs.labels == ["a", "b"]
    t = declares_a_mix()
    assert t.outputs.labels == ["test_pickle", None, "out_c", "out_d"]
    assert [o.content_type for o in t.outputs] == ["pickle", "text-latin2", None, None]
    assert len(type_hinted(blob(b"x")).outputs) == 1  # a type hint declares no outputs

    # Rain's test_output_detailed_specs: None keeps the function's own output.
    u = declares_a_mix(outputs=[None, None, Output(content_type="pickle"), "foo"])
    assert u.outputs.labels == ["test_pickle", None, "out_c", "foo"]
    assert [o.content_type for o in u.outputs] == ["pickle", "text-latin2", "pickle", None]
    assert [o["encode"] for o in u.config["outputs"]] == ["pickle", None, None, None]
    with pytest.raises(ValueError, match="has 2 items, but the function has 4 outputs"):
        declares_a_mix(outputs=[None, "x"])

    # A return annotation read alone when another annotation cannot be evaluated.
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\n"
        "def f(ctx, x: NotDefinedHere) -> ('p', 'q'):\n"
        "    return None\n",
        namespace,
    )
    assert remote()(namespace["f"])(1).outputs.labels == ["p", "q"]


# --- 4. smaller names: inputs by label, load(cache), errors, label, warning... ----------


@pytest.mark.timeout(30)
def test_task_inputs_are_a_labeled_list(session: Session) -> None:
    @remote()
    def two(ctx: Any, first: Any, second: Any) -> Any:
        return first

    a, b = blob(b"a"), blob(b"b")
    t = two(a, second=b)
    assert isinstance(t.inputs, LabeledList)
    assert t.inputs["first"] is a and t.inputs["second"] is b
    assert t.inputs.get_label(1) == "second" and dict(t.inputs.items()) == {"first": a, "second": b}
    assert t.inputs == [a, b]  # still equal to the list it used to be
    u = Task("concat", inputs=[("x", a), b], outputs=1)
    assert u.inputs.labels == ["x", None] and u.inputs["x"] is a
    with pytest.raises(KeyError, match="labelled 'x'"):
        Task("concat", inputs=[("x", a), ("x", b)], outputs=1)


@pytest.mark.timeout(30)
def test_load_cache_errors_label_and_rains_other_names(transport: FakeTransport) -> None:
    instance = DataInstance(b"[1, 2]", content_type="json")
    cached = instance.load(cache=True)
    assert instance.load(cache=True) is cached and instance.load() == cached
    assert instance.load() is not instance.load(cache=False)

    with Session(transport) as session:
        # Rain raised RainException for these; still TypeErrors too.
        for bad in (lambda: blob(123), lambda: tasks.Concat(["not an object"])):
            with pytest.raises(RainException):
                bad()
            with pytest.raises(TypeError):
                bad()
        obj = blob(b"x")
        obj.label = "L1.0"  # utils/bench/simple_task_scaling.py
        assert obj.label == obj.spec.label == "L1.0"
        made_dir = Task("dummy", outputs=[DataObject("d", data_type=DataType.DIRECTORY)])
        assert made_dir.output.spec.data_type == "dir"
        assert type(Output(data_type=DataType.DIRECTORY).data_type) is str  # kept plain
        assert obj.spec.data_type == DataType.BLOB and DataType("dir") is DataType.DIRECTORY
        assert isinstance(InputDir("x"), InputBase) and isinstance(OutputDir("y"), OutputBase)
        Output("o").expect_blob()
        OutputDir("o").expect_dir()
        session.submit()
        with pytest.raises(GraphError, match="submitted"):
            obj.label = "late"
    assert Session(transport).client is None
    client = object.__new__(Client)  # no controller needed: new_session only opens
    client.transport = transport  # type: ignore[assignment]
    made = client.new_session("named")
    assert made.client is client
    made.close()


@pytest.mark.timeout(30)
def test_a_too_big_pickled_argument_raises_rain_warning(session: Session) -> None:
    @remote()
    def test(ctx: Any, a: Any) -> None:
        pass

    big = "X" * PICKLE_ARG_SIZE_LIMIT
    # Rain's test_remote_large_args: raised, with Rain's message.
    with pytest.raises(RainWarning, match="Pickled object a length"):
        test(big)
    assert session.task_count == 0  # nothing was made
    test("X" * 1024)
    # A filter of the program's own for RainWarning decides: only shown, or ignored.
    with pytest.warns(RainWarning, match="argument a of"):
        test(big)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RainWarning)
        test(big)
    assert session.task_count == 3
