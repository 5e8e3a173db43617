"""Rain's client API as Rain's users wrote it, beyond the user guide (issue 10).

Graph building against the in-memory fake transport of test_graph_building.py;
running tasks against one real local cluster of two agents."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph_fakes import FakeTransport
from shoal import LocalCluster
from shoal.graph import (
    Client,
    DataInstance,
    Input,
    Output,
    OutputDir,
    Program,
    RainException,
    RainWarning,
    Session,
    SessionException,
    Task,
    TaskException,
    TaskState,
    blob,
    remote,
    tasks,
)
from shoal.graph.builtins import SleepConfig
from shoal.graph.builtins_execute import ArgOutput, OutputMapping
from shoal.graph.session import GraphError, active_session, get_active_session
from waiting import wait_until

NODES = ["node-0", "node-1"]


# --- names --------------------------------------------------------------------------


def test_exception_classes_under_rains_names() -> None:
    import shoal.graph as rain_client  # what `from rain.client import *` users get

    for name in ("RainException", "RainWarning", "SessionException", "TaskException"):
        assert hasattr(rain_client, name)
    assert issubclass(TaskException, SessionException)
    assert issubclass(SessionException, RainException)
    assert issubclass(RainWarning, Warning)
    # misuse of the API is a RainException, as Rain raised it
    assert issubclass(GraphError, RainException)
    with pytest.raises(RainException, match="no active session"):
        blob(b"x")


# --- sessions -----------------------------------------------------------------------


def test_session_counts_active_and_nested_with(transport: FakeTransport) -> None:
    assert get_active_session is not None and active_session is get_active_session
    s = Session(transport)
    with s:
        assert get_active_session() is s and s.active
        a = blob(b"a")
        tasks.Sleep(a, 0.1)
        assert (s.task_count, s.dataobj_count) == (1, 2)
        with s:  # a nested 'with s:' only binds again
            tasks.Concat([a, a])
        assert not s.is_closed and s.active and get_active_session() is s
        assert (s.task_count, s.dataobj_count) == (2, 3)
        s.keep_all()
        s.submit()
        assert (s.task_count, s.dataobj_count) == (0, 0)
        assert transport.submits[0]["kept"] == {o.id for o in transport.submits[0]["objects"]}
    assert s.is_closed and not s.active


def test_task_state_follows_submit_wait_and_update(transport: FakeTransport) -> None:
    from shoal.graph.attributes import TaskInfo

    with Session(transport) as s:
        t = tasks.Sleep(blob(b"a"), 0.1)
        u = tasks.Sleep(blob(b"b"), 0.1)
        assert t.state is None
        s.submit()
        assert t.state == TaskState.notAssigned
        t.wait()
        assert t.state == TaskState.finished and u.state == TaskState.notAssigned
        transport.infos[u.id] = TaskInfo(error="boom", duration=0.1)
        u.update()
        assert u.state == TaskState.failed


# --- Program ------------------------------------------------------------------------


def test_program_stdin_label_name_and_output_overrides(transport: FakeTransport) -> None:
    wc = Program(["tee", Output("copy", path="copy.txt")], stdin="data", stdout=True)
    assert wc.stdin == Input("data")
    with Session(transport):
        t = wc(data=blob(b"x"), name="wc/run-1")
        assert t.name == "wc/run-1" and t.spec.inputs[0].label == "data"
        assert t.outputs.labels == ["copy", "stdout"]
        u = wc(
            data=blob(b"y"),
            outputs=[Output("saved", content_type="text"), Output("echo", content_type="text")],
        )
        # the file stays where the program writes it; labels and types change
        assert u.config.args == ("tee", ArgOutput("saved", "copy.txt", "text"))
        assert u.config.stdout == OutputMapping("echo", content_type="text")
        assert [o.content_type for o in u.outputs] == ["text", "text"]
        one = Program("cat", stdin="data", stdout="out")(data=blob(b"z"), output="result")
        assert one.outputs.labels == ["result"]
        with pytest.raises(ValueError, match="2 output"):
            wc(data=blob(b"y"), outputs=["only-one"])


# --- @remote ------------------------------------------------------------------------


@remote(name="stats/mean", auto_encode="pickle", outputs=2)
def mean_and_count(ctx, values):
    return sum(values) / len(values), len(values)


@remote(outputs=("a", "b"))
def pair(ctx):
    return {"a": b"1", "b": b"2"}


def test_remote_name_auto_encode_and_call_overrides(transport: FakeTransport) -> None:
    with Session(transport):
        t = mean_and_count([1, 2, 3])
        assert t.name == "stats/mean"
        assert [o["encode"] for o in t.config["outputs"]] == ["pickle", "pickle"]
        assert [o.content_type for o in t.outputs] == ["pickle", "pickle"]
        u = mean_and_count([1], outputs=["mean", Output("count", encode="json")])
        assert u.outputs.labels == ["mean", "count"]
        assert [o["encode"] for o in u.config["outputs"]] == ["pickle", "json"]
        v = pair(outputs=3)  # a number replaces the outputs
        assert len(v.outputs) == 3
        w = pair(output=None, outputs=("x", "y"))
        assert w.outputs.labels == ["x", "y"]


def test_a_big_pickled_argument_warns(transport: FakeTransport) -> None:
    @remote()
    def takes(ctx, data):
        return b""

    with Session(transport):
        with pytest.warns(RainWarning, match="argument data .*consider passing the data as a blob"):
            takes(b"x" * (2 * 1024 * 1024))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RainWarning)
            takes(b"x" * 1000)


# --- custom task types --------------------------------------------------------------


class Twice(Task):
    """A task type of one's own, as Rain's users made them."""

    TASK_TYPE = "buildin/concat"

    def __init__(self, obj):
        super().__init__((obj, obj), 1)


class Nap(Task):
    TASK_TYPE = "buildin/sleep"

    def __init__(self, obj, seconds):
        super().__init__((obj,), [Output("rested", content_type="text")], config=seconds)


def test_task_subclass_with_task_type(transport: FakeTransport) -> None:
    with Session(transport) as s:
        t = Twice(blob("a"))
        n = Nap(t, 0.5)
        assert t.task_type == "concat" and len(t.outputs) == 1 and t.output.label is None
        assert n.task_type == "sleep" and n.config == SleepConfig(0.5)
        assert n.output.label == "rested" and n.output.content_type == "text"
        plain = Task([t], 2, task_type="my/kind", config={"k": 1})
        assert plain.task_type == "my/kind" and len(plain.outputs) == 2
        with pytest.raises(ValueError, match="TASK_TYPE"):
            Task([t], 1)
        n.keep_outputs()
        s.submit()
        n.unkeep_outputs()
        assert transport.unkept == [n.output.id] and not n.output.is_kept()


# --- content types ------------------------------------------------------------------


def test_a_missing_content_type_is_a_rain_exception() -> None:
    with pytest.raises(RainException, match="no content type"):
        DataInstance(b"raw").load()


def test_arrow_encodes_any_value_as_rain_did() -> None:
    pytest.importorskip("pyarrow")
    from shoal.graph.content_types import decode, encode

    for value in ([1, 2, 3], {"x": 123, "names": ["a", "b"]}, "text", 4.5):
        assert decode(*encode(value, "arrow")) == value


# --- on a real cluster --------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(NODES) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c:
        yield c


@remote(outputs=[Output("made"), OutputDir("tree"), Output("meta", encode="json")])
def context_demo(ctx, data):
    ctx.debug("running {}", ctx.function.__name__)
    root = Path(tempfile.mkdtemp())
    (root / "sub").mkdir()
    (root / "sub" / "f.txt").write_text("in a tree")
    return {
        "made": ctx.blob([1, 2], encode="json"),
        "tree": ctx.stage_directory(root),
        "meta": {"user": data.spec.user, "function": ctx.function.__name__},
    }


def test_context_function_blob_stage_directory_and_input_user(client: Client) -> None:
    with client.new_session() as s:
        data = blob(b"x")
        data.spec.user["origin"] = "sensor-7"
        t = context_demo(data)
        t.keep_outputs()
        s.submit()
        made, tree, meta = t.fetch_outputs()
        assert made.load() == [1, 2] and made.content_type == "json"
        target = Path(tempfile.mkdtemp()) / "copy"
        tree.write(target)
        assert (target / "sub" / "f.txt").read_text() == "in a tree"
        assert meta.load() == {"user": {"origin": "sensor-7"}, "function": "context_demo"}
        t.update()
        assert "running context_demo" in t.info.debug


def test_program_and_remote_overrides_run(client: Client) -> None:
    upper = Program(["tr", "a-z", "A-Z"], stdin="text", stdout=True)
    with client.new_session() as s:
        t = upper(text=blob(b"rain\n"), name="upper/1", output=Output("loud", content_type="text"))
        u = mean_and_count([1, 2, 3], outputs=["mean", Output("count", encode="json")])
        t.keep_outputs()
        u.keep_outputs()
        s.submit()
        assert t.outputs["loud"].fetch().get_str() == "RAIN\n"
        assert u.outputs["mean"].fetch().load() == 2.0
        assert u.outputs["count"].fetch().load() == 3
        t.update()
        assert t.name == "upper/1" and t.state == TaskState.finished


def test_custom_task_type_runs_and_unkeeps(client: Client) -> None:
    with client.new_session() as s:
        n = Nap(Twice(blob("ab")), 0.05)
        n.keep_outputs()
        s.submit()
        assert n.output.fetch().get_str() == "abab"
        n.unkeep_outputs()
        assert not n.output.is_kept()


def test_an_unkept_object_of_an_earlier_submit_can_be_read(client: Client) -> None:
    with client.new_session() as s:
        t1 = tasks.Sleep(blob("Hello "), 0.5)  # not kept
        s.submit()
        t2 = tasks.Concat((t1, blob("world")))
        t2.output.keep()
        s.submit()  # t1 still runs: the server still has its output
        assert t2.output.fetch().get_bytes() == b"Hello world"


def test_load_of_a_relative_path_fails_at_wait(client: Client) -> None:
    with client.new_session() as s:
        tasks.Load("relative/path")
        s.submit()
        with pytest.raises(TaskException, match="absolute path"):
            s.wait_all()


@remote()
def boom(ctx):
    raise RuntimeError("boom")


def _raises_task_exception(call) -> bool:
    try:
        call()
    except TaskException:
        return True
    return False


def test_after_a_failure_every_call_raises_task_exception(client: Client) -> None:
    with client.new_session() as s:
        kept = blob(b"kept")
        kept.keep()
        b = boom()
        s.submit()
        with pytest.raises(TaskException, match="boom"):
            b.wait()
        assert b.state == TaskState.failed
        for call in (s.wait_all, b.update, kept.update, kept.unkeep, kept.fetch, kept.wait):
            with pytest.raises(TaskException, match="boom"):
                call()


def test_update_and_unkeep_as_first_calls_after_a_failure(client: Client) -> None:
    with client.new_session() as s:
        b = boom()
        s.submit()
        # update() is the first call that learns of the failure
        wait_until(lambda: _raises_task_exception(b.update), 30, "update() to raise")
    with client.new_session() as s:
        objects = [blob(f"{i}") for i in range(200)]
        for obj in objects:
            obj.keep()
        boom()
        s.submit()
        left = iter(objects)
        wait_until(lambda: _raises_task_exception(next(left).unkeep), 30, "unkeep() to raise")


def test_info_governor_is_the_address_with_the_node_beside(client: Client) -> None:
    with client.new_session() as s:
        t = tasks.Sleep(blob(b"x"), 0.01)
        s.submit()
        t.wait()
        t.update()
        assert t.info.node in NODES
        host, _, port = t.info.governor.rpartition(":")
        assert host and port.isdigit()


def test_get_server_info_lists_the_governors(client: Client) -> None:
    info = client.get_server_info()
    names = sorted(g["name"] for g in info["governors"])
    assert names == NODES
    for g in info["governors"]:
        assert g["resources"]["cpus"] >= 1
        assert ":" in g["governor_id"]


def test_a_missing_content_type_on_fetched_data(client: Client) -> None:
    with client.new_session() as s:
        raw = tasks.Concat([blob(b"a"), blob(b"b")])
        raw.output.keep()
        s.submit()
        with pytest.raises(RainException, match="no content type"):
            raw.output.fetch().load()
        assert raw.output.fetch().get_bytes() == b"ab"
