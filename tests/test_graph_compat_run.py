"""More Rain user code on shoal.graph with only its imports changed: Rain's positional
orders (Program, DataObject), a data object's content type as the task set it,
``ctx.pickled(obj, content_type)``, and Rain 0.3's task functions (``tasks.concat``,
``tasks.sleep``, ``tasks.open``, ``tasks.export``, ``tasks.execute``). Graph shapes are
checked against the in-memory fake transport; what runs, runs on a real local
cluster of one agent."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graph_fakes import FakeTransport
from shoal import LocalCluster
from shoal.graph import (
    Client,
    DataInstance,
    DataObject,
    DataType,
    Input,
    Output,
    Program,
    RainException,
    Session,
    blob,
    pickled,
    remote,
    tasks,
)
from shoal.graph.attributes import ObjectInfo, TaskInfo, TaskSpec
from shoal.graph.builtins import LoadConfig, SleepConfig, StoreConfig
from shoal.graph.builtins_execute import InputMapping, OutputMapping
from shoal.graph.context import Context

# --- positional orders ----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_program_and_data_object_take_rains_positional_order(session: Session) -> None:
    # Program(args, stdout, stdin, input_paths, output_paths, shell, cpus)
    p = Program(("cat", Input("a")), "out", "data", (), ["x"], True, 2)
    assert (p.stdout, p.output_paths, p.shell, p.cpus) == ("out", ("x",), True, 2)
    t = p(a=blob(b"1"), data=blob(b"2"))
    assert t.outputs.labels == ["x", "out"] and t.cpus == 2 and t.config.shell
    # Rain 0.3's names of the path lists (tests/pytests/test_program.py).
    q = Program(("sh", "-c", "echo ABC > output.txt"), output_files=[Output("o", "output.txt")])
    assert q().outputs.labels == ["o"]
    assert Program("cat", input_files=["cfg"]).input_labels == ["cfg"]
    with pytest.raises(TypeError, match="output_paths or output_files"):
        Program("true", output_paths=["a"], output_files=["b"])

    # DataObject(label, session, data_type, content_type)
    d = DataObject("tree", session, DataType.DIRECTORY)
    assert d.data_type == "dir" and d.session is session
    j = DataObject("j", None, "blob", "json")
    assert j.content_type == "json" and j.session is session
    with pytest.raises(TypeError, match="session is a Session, not 'dir'"):
        DataObject("x", "dir")  # type: ignore[arg-type]


# --- DataObject.content_type with info -------------------------------------------------


@pytest.mark.timeout(30)
def test_content_type_of_an_object_follows_its_info(transport: FakeTransport) -> None:
    with Session(transport) as s:
        undeclared = tasks.Sleep(blob(b"[1]"), 0).output
        text = tasks.Sleep(blob("x"), 0).output  # declared 'text'
        undeclared.keep()
        s.submit()
        assert undeclared.content_type is None
        # What the task set at run time, once fetch() brings it (Rain merged it in).
        transport.results[undeclared.id] = DataInstance(
            b"[1]", info=ObjectInfo(size=3, content_type="json")
        )
        undeclared.fetch()
        assert undeclared.content_type == "json" and undeclared.spec.content_type is None
        # update() brings it too; a subtype of the declared type is the finer one.
        transport.infos[text.id] = ObjectInfo(size=1, content_type="text-latin-1")
        text.update()
        assert text.content_type == "text-latin-1" and text.spec.content_type == "text"
        transport.infos[text.id] = ObjectInfo(size=1)
        text.update()
        assert text.content_type == "text"  # nothing set at run time: the declared one


@pytest.mark.timeout(30)
def test_ctx_pickled_takes_a_content_type(tmp_path: Path) -> None:
    ctx = Context(TaskSpec(task_type="python"), TaskInfo(), staging_dir=tmp_path)
    assert ctx.pickled([1, 2]).content_type == "pickle"
    made = ctx.pickled([1, 2], content_type="cloudpickle")
    assert made.content_type == "cloudpickle" and made.load() == [1, 2]
    assert ctx.pickled({"a": 1}, "pickle").load() == {"a": 1}
    with pytest.raises(RainException, match="'pickle' or 'cloudpickle'"):
        ctx.pickled(1, content_type="json")


# --- Rain 0.3's task functions ---------------------------------------------------------


@pytest.mark.timeout(30)
def test_rain_03_task_functions_build_the_04_tasks(session: Session) -> None:
    a, b = blob(b"a"), blob(b"b")
    c = tasks.concat((a, b))
    assert c.task_type == "concat" and c.inputs == [a, b]
    s = tasks.sleep(0.25, c)  # seconds first, as in 0.3
    assert s.task_type == "sleep" and s.config == SleepConfig(0.25) and s.inputs == [c.output]
    with pytest.raises(TypeError, match="seconds first"):
        tasks.sleep(a, 1.0)  # type: ignore[arg-type]
    o = tasks.open("/data/in.txt")
    assert o.task_type == "load" and o.config == LoadConfig("/data/in.txt")
    e = tasks.export(o, "/data/out.txt")
    assert e.task_type == "store" and e.config == StoreConfig("/data/out.txt")
    assert len(e.outputs) == 0
    x = tasks.execute(
        ("split", "-d", "-n", "l/2", s), stdin=None, output_files=["x00", "x01"], shell=False
    )
    assert x.outputs.labels == ["x00", "x01"] and x.task_type == "execute"
    y = tasks.execute("cat data", input_files=[Input("data", dataobj=a)], stdout=True)
    assert y.config.input_paths == (InputMapping("data"),)  # at the path "data"
    assert y.config.stdout == OutputMapping("stdout")

    # A star import gives 0.4's names only: the builtin open() stays open().
    namespace: dict[str, Any] = {}
    exec("from shoal.graph.tasks import *", namespace)
    assert "Concat" in namespace and "open" not in namespace and "concat" not in namespace


# --- on a real cluster ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["node-0"]) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c:
        yield c


@remote()
def sets_its_type(ctx: Any, x: Any) -> Any:
    # The output's content type is set here, at run time, not in the graph.
    return ctx.pickled({"got": x.get_str()}, content_type="pickle")


@pytest.mark.timeout(120)
def test_content_type_set_at_run_time_reaches_the_object(client: Client) -> None:
    with client.new_session() as s:
        t = sets_its_type(blob("rain"))
        u = sets_its_type(blob("snow"))
        t.keep_outputs()
        s.submit()
        assert t.output.content_type is None  # not known before the task ran
        assert t.output.fetch().load() == {"got": "rain"}
        assert t.output.content_type == "pickle"
        u.output.wait()
        u.output.update()
        assert u.output.content_type == "pickle"


@pytest.mark.timeout(120)
def test_rain_03_functions_run(client: Client, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("aa\nbb\ncc\ndd\n")  # equal lines: split -n l/2 halves them
    exported = tmp_path / "out.bin"
    with client.new_session() as s:
        # tests/pytests/test_program.py of Rain 0.3, with the imports swapped.
        t0 = tasks.execute(
            "cat in.txt",
            input_files=[Input("in.txt", dataobj=tasks.open(str(source)))],
            stdout=True,
        )
        t1 = tasks.execute(("split", "-d", "-n", "l/2", t0), output_files=["x00", "x01"])
        t2 = tasks.sleep(0.05, tasks.concat((t1.outputs["x01"], t1.outputs["x00"])))
        tasks.export(pickled([1, 2]), str(exported))
        t1.keep_outputs()
        t2.keep_outputs()
        s.submit()
        assert t1.outputs["x00"].fetch().get_bytes() == b"aa\nbb\n"
        assert t2.output.fetch().get_bytes() == b"cc\ndd\naa\nbb\n"
        s.wait_all()
    assert pickle.loads(exported.read_bytes()) == [1, 2]
