"""Client-side graph building of shoal.graph (the Rain user guide's examples) against
an in-memory fake transport: what reaches the transport."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from graph_fakes import FakeTransport
from shoal.client import serialize
from shoal.graph import tasks
from shoal.graph.attributes import ObjectInfo
from shoal.graph.builtins import (
    LoadConfig,
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
from shoal.graph.data_instance import DataInstance
from shoal.graph.data_object import blob, directory, pickled
from shoal.graph.program import Input, InputDir, Output, OutputDir, Program
from shoal.graph.remote import remote, resolving_inputs
from shoal.graph.session import GraphError, Session, active_session
from shoal.graph.transport import GraphTransport


def test_fake_is_a_transport(transport: FakeTransport) -> None:
    assert isinstance(transport, GraphTransport)


# --- the guide's examples -------------------------------------------------------------


def test_hello_world(transport: FakeTransport) -> None:
    with Session(transport, name="My session") as session:
        a = blob("Hello ")
        b = blob("world!")
        t = tasks.Concat((a, b))
        t.output.keep()
        session.submit()
        session.wait_all()
    assert transport.opened == ["My session"]
    (sub,) = transport.submits
    (spec,) = sub["tasks"]
    assert spec.task_type == "concat"
    assert [i.id for i in spec.inputs] == [a.id, b.id]
    assert spec.outputs == [t.output.id]
    assert [o.id for o in sub["objects"]] == [a.id, b.id, t.output.id]
    assert sub["payloads"] == {a.id: b"Hello ", b.id: b"world!"}
    assert sub["kept"] == {t.output.id}
    assert a.spec.label == "const" and a.spec.content_type == "text"
    assert transport.waited == [[t.id]]
    assert session.is_closed and transport.closed == [session.session_id]


def test_default_session(transport: FakeTransport) -> None:
    session = Session(transport, default=True)
    try:
        a = blob("Hello ")
        tasks.Concat([a, blob("world!")])
        assert active_session() is session
        session.submit()
        assert len(transport.submits[0]["tasks"]) == 1
    finally:
        session.close()
    with pytest.raises(GraphError, match="no active session"):
        blob("x")


def test_fetch_result(transport: FakeTransport, session: Session) -> None:
    t = tasks.Concat((blob("Hello "), blob("world!")))
    t.output.keep()
    session.submit()
    transport.results[t.output.id] = DataInstance(b"Hello world!", info=ObjectInfo(size=12))
    assert t.output.fetch().get_bytes() == b"Hello world!"
    assert t.output.info is not None and t.output.info.size == 12


def test_sleep_chaining_and_task_as_object(session: Session) -> None:
    a, b = blob("Hello "), blob("world!")
    t1 = tasks.Sleep(b, 1.0)
    t2 = tasks.Concat((a, t1.output))
    t3 = tasks.Concat((a, t1))
    assert t1.config == SleepConfig(1.0)
    assert t1.output.content_type == "text"
    assert t2.inputs[1] is t1.output and t3.inputs[1] is t1.output


def test_output_needs_exactly_one(session: Session) -> None:
    store = tasks.Store(blob(b"x"), "/tmp/result")
    with pytest.raises(GraphError, match="0 outputs"):
        store.output  # noqa: B018
    with pytest.raises(GraphError):
        tasks.Sleep(store, 1.0)
    assert len(store.outputs) == 0


def test_multiple_outputs_tee(transport: FakeTransport, session: Session) -> None:
    data = blob(b"data")
    t = tasks.Execute(["tee", Output("output1")], stdout="output2", stdin=data)
    assert t.outputs["output1"] is t.outputs[0]
    assert t.outputs["output2"] is t.outputs[1]
    assert t.config == ExecuteConfig(
        ("tee", ArgOutput("output1")), stdin=0, stdout=OutputMapping("output2")
    )
    with pytest.raises(GraphError, match="2 outputs"):
        t.output  # noqa: B018
    t.keep_outputs()
    session.submit()
    assert transport.submits[0]["kept"] == {o.id for o in t.outputs}
    transport.results[t.outputs[0].id] = DataInstance(b"1")
    transport.results[t.outputs[1].id] = DataInstance(b"2")
    assert [d.get_bytes() for d in t.fetch_outputs()] == [b"1", b"2"]


def test_constants() -> None:
    with Session(FakeTransport()):
        assert blob(b"Raw data").payload == b"Raw data"
        assert blob(b"Raw data", label="input data").label == "input data"
        s = blob("String data")
        assert (s.payload, s.content_type) == (b"String data", "text")
        j = blob("[1, 2, 3, 4]", content_type="json")
        assert (j.payload, j.content_type) == (b"[1, 2, 3, 4]", "json")
        e = blob([1, 2, 3, 4], encode="json")
        assert e.content_type == "json"
        p = blob([1, 2, 3, 4], encode="pickle")
        assert p.content_type == "pickle" and pickle.loads(p.payload) == [1, 2, 3, 4]
        q = pickled([1, 2, 3, 4])
        assert q.content_type == "pickle" and pickle.loads(q.payload) == [1, 2, 3, 4]
        with pytest.raises(TypeError, match="encode"):
            blob([1, 2])


def test_task_names(session: Session) -> None:
    t1 = tasks.Concat([blob(b"a")], name="my-plain-name")
    t2 = tasks.Execute(["train", "xyz"], name="main_tasks/training/train1")
    t3 = tasks.Execute(["train", "abc"], name="main_tasks/training/train1")
    assert t1.name == "my-plain-name"
    assert t2.name == t3.name == "main_tasks/training/train1"


def test_builtin_tasks_example(transport: FakeTransport, session: Session) -> None:
    data1 = tasks.Load("/path/to/data")
    data2 = blob("constant data")
    merge = tasks.Concat((data1, data2))
    result = tasks.Sleep(merge, 1.0)
    store = tasks.Store(result, "/path/to/result")
    session.submit()
    assert data1.config == LoadConfig("/path/to/data")
    assert store.config == StoreConfig("/path/to/result")
    kinds = [t.task_type for t in transport.submits[0]["tasks"]]
    assert kinds == ["load", "concat", "sleep", "store"]
    assert tasks.Load("relative/path").config == LoadConfig("relative/path")  # fails at run


def test_execute_simple_forms(session: Session) -> None:
    t = tasks.Execute("sleep 1")
    assert t.config.args == "sleep 1" and len(t.outputs) == 0 and t.inputs == []
    assert tasks.Execute(("sleep", "1")).config.args == ("sleep", "1")
    t = tasks.Execute("sleep 1 && sleep 1", shell=True)
    assert t.config.shell


def test_execute_outputs(session: Session) -> None:
    t = tasks.Execute("wget https://github.com/", output_paths=[Output("index", path="index.html")])
    assert t.output.label == "index"
    assert t.config.output_paths == (OutputMapping("index", "index.html"),)
    t = tasks.Execute("wget https://github.com/", output_paths=["index.html"])
    assert t.output.label == "index.html"
    t = tasks.Execute(
        ["wget", "https://github.com/", "--output-file", Output("log")],
        output_paths=["index.html"],
    )
    assert t.outputs.labels == ["log", "index.html"]
    assert tasks.Execute("ls /", stdout=True).output.label == "stdout"
    assert tasks.Execute("ls /", stdout="my_label").output.label == "my_label"
    out = tasks.Execute("ls /", stdout=Output("my_label", content_type="text")).output
    assert (out.label, out.content_type) == ("my_label", "text")
    with pytest.raises(ValueError, match="no path"):
        tasks.Execute("ls /", stdout=Output("x", path="y"))
    t = tasks.Execute(
        "git clone https://github.com/substantic/rain", output_paths=[OutputDir("rain")]
    )
    assert t.output.data_type == "dir"


def test_execute_grep_rain(transport: FakeTransport, session: Session) -> None:
    data = blob(b"It is\nrainy day\n")
    task = tasks.Execute(["grep", "rain", data], stdout=True)
    task.output.keep()
    session.submit()
    assert task.inputs == [data]
    assert task.config.args == ("grep", "rain", ArgInput(0))
    assert task.config.stdout == OutputMapping("stdout")
    spec = transport.submits[0]["tasks"][0]
    assert spec.task_type == "execute" and spec.inputs[0].id == data.id


def test_execute_inputs(session: Session) -> None:
    my_data = blob(b"x")
    t = tasks.Execute(["a-program", "argument1", Input("my_label", path="myfile", dataobj=my_data)])
    assert t.config.args[2] == ArgInput("my_label", "myfile")
    assert t.spec.inputs[0].label == "my_label"
    t = tasks.Execute(
        ["a-program", "argument1"], input_paths=[Input("my_label", path="myfile", dataobj=my_data)]
    )
    assert t.config.input_paths == (InputMapping("my_label", "myfile"),)
    assert tasks.Execute(["a-program", "argument1"], stdin=my_data).config.stdin == 0
    t = tasks.Execute(
        "echo 'New line' >> myfile",
        shell=True,
        input_paths=[Input("myfile", dataobj=my_data, write=True)],
    )
    assert t.config.input_paths == (InputMapping("myfile", None, True),)
    with pytest.raises(ValueError, match="no dataobj"):
        tasks.Execute(["prog", Input("x")])
    with pytest.raises(ValueError, match="expects a dir"):
        tasks.Execute(["prog"], input_paths=[InputDir("d", dataobj=my_data)])
    with pytest.raises(ValueError, match="two inputs"):
        tasks.Execute(["p", Input("a", dataobj=my_data), Input("a", dataobj=my_data)])


def test_execute_cpus(session: Session) -> None:
    t = tasks.Execute("a-parallel-program", cpus=4)
    assert t.cpus == 4 and t.config.cpus == 4 and t.spec.resources == {"cpus": 4}


def test_failed_task_construction_leaves_no_orphans(session: Session) -> None:
    with pytest.raises(ValueError):
        tasks.Execute("prog", cpus=0)
    session.submit()  # nothing half-made is left in the session


def test_program(session: Session) -> None:
    rain_grep = Program(["grep", "rain", Input("my_input", path="my_file")], stdout=True)
    data = blob(b"It is\nrainy day\n")
    task = rain_grep(my_input=data)
    assert task.inputs == [data]
    assert task.config.args == ("grep", "rain", ArgInput("my_input", "my_file"))
    assert task.output.label == "stdout"
    with pytest.raises(TypeError, match="missing"):
        rain_grep()
    prog = Program(["cat"], stdin=Input("in"), output_paths=["x"], input_paths=[Input("cfg")])
    t = prog(**{"in": data, "cfg": blob(b"c")})
    assert t.config.stdin == "in" and t.outputs.labels == ["x"]
    with pytest.raises(ValueError, match="dataobj"):
        Program(["cat", Input("a", dataobj=data)])


# --- @remote --------------------------------------------------------------------------


class MyClass:
    def __init__(self, my_data: Any) -> None:
        self.my_data = my_data


def test_remote_hello(session: Session) -> None:
    @remote()
    def hello(ctx: Any) -> str:
        return "Hello world!"

    t = hello()
    assert t.task_type == "python" and t.name == "hello"
    assert t.output.label == "output"
    fn = serialize.loads(t.config["function"])
    assert fn(None) == "Hello world!"


def test_remote_inputs_nested(session: Session) -> None:
    @remote
    def hello(ctx: Any, data1: Any, data2: Any) -> bytes:
        return data1 + data2.get_bytes()

    data = blob("Rain!")
    t = hello(b"Hello ", data)
    assert t.inputs == [data] and t.spec.inputs[0].label == "data2"
    with resolving_inputs([DataInstance(b"Rain!")]):
        args, kwargs = serialize.loads(t.config["args"])
    assert serialize.loads(t.config["function"])(None, *args, **kwargs) == b"Hello Rain!"

    @remote()
    def my_call(ctx: Any, input: Any) -> bytes:
        return b""

    objs = [blob(b"data1"), blob(b"data2"), blob(b"data3")]
    t = my_call({"k": (MyClass([objs[0], objs[1]]), {objs[2]}), "again": objs[0]})
    assert t.inputs == objs
    values = [DataInstance(b"1"), DataInstance(b"2"), DataInstance(b"3")]
    with resolving_inputs(values):
        (arg,), _ = serialize.loads(t.config["args"])
    assert arg["k"][0].my_data == values[:2] and arg["again"] is values[0]
    t2 = my_call(tasks.Sleep(objs[0], 1))
    assert t2.inputs[0].producer is not None


def test_remote_input_options(session: Session) -> None:
    @remote(inputs={"data": Input(load=True)})
    def fn2(ctx: Any, data: Any) -> None:
        pass

    @remote(auto_load=True)
    def fn3(ctx: Any, data: Any) -> None:
        pass

    @remote(inputs={"data": Input(content_type="json")})
    def fn4(ctx: Any, data: Any) -> None:
        pass

    data = blob([1, 2, 3, 4], encode="json")
    assert fn2(data).config["inputs"]["data"]["load"] is True
    assert fn3(data).config["auto_load"] is True
    fn4(data)
    with pytest.raises(ValueError, match="content type"):
        fn4(pickled(1))
    with pytest.raises(ValueError, match="no parameter"):
        remote(inputs={"nope": Input()})(lambda ctx: None)
    with pytest.raises(TypeError):
        fn2()


def test_remote_outputs(session: Session) -> None:
    @remote(outputs=3)
    def fn3(ctx: Any) -> Any:
        return (b"data1", b"data2", b"data3")

    @remote(outputs=0)
    def fn4(ctx: Any) -> None:
        pass

    @remote(outputs=("label1", "label2"))
    def fn5(ctx: Any) -> Any:
        return {"label1": b"data1", "label2": b"data2"}

    @remote(outputs=(Output(content_type="json"), Output(content_type="json")))
    def fn6(ctx: Any) -> Any:
        return ("[1, 2, 3]", "{'x': 123}")

    @remote(outputs=(Output(encode="pickle"), Output(encode="json")))
    def fn7(ctx: Any) -> Any:
        return ([1, 2, 3], {"x": 123})

    assert len(fn3().outputs) == 3
    assert len(fn4().outputs) == 0
    assert fn5().outputs.labels == ["label1", "label2"]
    assert [o.content_type for o in fn6().outputs] == ["json", "json"]
    t = fn7()
    assert [o.content_type for o in t.outputs] == ["pickle", "json"]
    assert [o["encode"] for o in t.config["outputs"]] == ["pickle", "json"]


def test_remote_type_hints_and_cpus(session: Session) -> None:
    @remote
    def test1(
        ctx: Any,
        a: Input(content_type="json"),  # type: ignore[valid-type]
    ) -> Output(encode="pickle", label="test_pickle"):  # type: ignore[valid-type]
        pass

    t = test1(blob("[1]", content_type="json"))
    assert t.output.label == "test_pickle" and t.output.content_type == "pickle"
    assert t.config["inputs"]["a"]["content_type"] == "json"

    @remote(cpus=4)
    def myfunction(ctx: Any) -> None:
        pass

    assert myfunction().cpus == 4
    with pytest.raises(TypeError, match="ctx"):
        remote(lambda: None)


def test_data_object_is_not_picklable_elsewhere(session: Session) -> None:
    with pytest.raises(GraphError, match="cannot be pickled"):
        pickle.dumps(blob(b"x"))


# --- directories ----------------------------------------------------------------------


def test_directories(tmp_path: Path, session: Session) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.txt").write_text("hi")
    d = directory(tmp_path)
    assert d.data_type == "dir" and d.payload is not None
    assert DataInstance(d.payload, data_type="dir").data_type == "dir"
    data1, data2 = blob(b"12345"), blob(b"67890")
    d2 = tasks.MakeDirectory(
        tasks.make_directory([("myfile.txt", data1), ("adir", d), ("a/deep/path/x", data2)])
    )
    assert d2.config == MakeDirectoryConfig(("myfile.txt", "adir", "a/deep/path/x"))
    assert d2.inputs == [data1, d, data2] and d2.output.data_type == "dir"
    d3 = tasks.SliceDirectory(d2, "a/deep/path/x")
    assert d3.output.data_type == "blob"
    assert d3.config == SliceDirectoryConfig("a/deep/path/x")
    d4 = tasks.SliceDirectory(d2, "a/deep/")
    assert d4.output.data_type == "dir"
    assert tasks.LoadDir("/data").output.data_type == "dir"
    with pytest.raises(ValueError, match="directory object"):
        tasks.SliceDirectory(data1, "x")
    with pytest.raises(ValueError, match="not a directory"):
        directory(tmp_path / "sub" / "f.txt")
    with pytest.raises(ValueError, match="overlap"):
        tasks.MakeDirectory([("a", data1), ("a/b", data2)])
