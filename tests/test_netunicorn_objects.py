"""netUnicorn's objects on shoal's own API, used without a cluster.

The gaps of the audit (/work/s10/audit-netunicorn.md) that need no running
experiment: (result, logs) pairs, Nodes and Node, dispatchers put in pipelines
and experiments, environment definitions, the basic and flags libraries,
RemoteClient's arguments and Result's methods. The code under test is written
the way netUnicorn's examples write it (with ``netunicorn.base`` /
``netunicorn.client`` / ``returns`` swapped for ``shoal``); the same gaps on a
real local cluster are in test_netunicorn_compat.py, whose tasks this file uses.
"""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import shoal.library.flags as flags_library
from shoal import (
    DockerImage,
    Experiment,
    Failure,
    FlagValues,
    Node,
    Nodes,
    Pipeline,
    RemoteClient,
    Result,
    ResultWithLogs,
    RuntimeContext,
    ShellExecution,
    Success,
    Task,
    TaskDispatcher,
    is_successful,
)
from shoal.library.basic import DummyTask, ShellCommand, SleepTask, SleepUntilTask
from shoal.library.flags import (
    AtomicDecrementFlagTask,
    AtomicIncrementFlagTask,
    SetFlagTask,
    WaitForExactFlagResultTask,
)
from shoal.model import DeploymentExecutionResult
from test_netunicorn_compat import Add, Greet

# ------------------------------------------------------ 1. (result, logs) pairs


@pytest.mark.timeout(30)
def test_result_with_logs_acts_as_its_result_and_pickles() -> None:
    pair = ResultWithLogs(Success({"t": [Success(1)]}), ["line 1\n"])
    result, logs = pair
    assert (result, logs) == (Success({"t": [Success(1)]}), ["line 1\n"])
    assert pair.result is result and pair.logs is logs
    assert pair.unwrap() == {"t": [Success(1)]} and pair.is_success
    assert pair.value_or(0) == {"t": [Success(1)]}
    assert pair.map(len) == Success(1) and pair.swap() == Failure({"t": [Success(1)]})
    assert pair._inner_value == {"t": [Success(1)]}  # what code reading a Result used
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(pair, protocol=protocol))
        assert type(back) is ResultWithLogs and back == pair
    with pytest.raises(TypeError):
        ResultWithLogs("not a result")  # type: ignore[arg-type]

    # a bare Result given to a DeploymentExecutionResult is paired with no logs
    report = DeploymentExecutionResult(Node("n"), Failure("lost"))
    outcome, log = report.result
    assert outcome == Failure("lost") and log == []
    report.result = Success(1)
    assert report.result == (Success(1), [])
    report.result = ResultWithLogs(Success(2), ["x"])
    assert "  Logs:\n    x" in repr(report)


# ------------------------------------------------------------- 2. Nodes, Node


@pytest.mark.timeout(30)
def test_nodes_take_skip_set_property_and_node_items() -> None:
    nodes = Nodes([Node("raspi-1"), Node("raspi-2"), Node("raspi-3"), Node("server")])
    # basic_example.ipynb: take(5) of 4 nodes gives the 4
    assert nodes.take(5).names() == ["raspi-1", "raspi-2", "raspi-3", "server"]
    assert nodes.take(5)[0].name == "raspi-1"
    assert nodes.skip(1).take(3).names() == ["raspi-2", "raspi-3", "server"]
    assert nodes.skip(10).names() == [] and nodes.skip(0) == nodes
    raspis = nodes.filter(lambda node: node.name.startswith("raspi-"))
    assert raspis.take(5).names() == ["raspi-1", "raspi-2", "raspi-3"]
    with pytest.raises(ValueError):
        nodes.skip(-1)

    assert raspis.set_property("role", "client") is raspis
    assert [node["role"] for node in nodes] == ["client", "client", "client", None]
    server = nodes["server"]
    server["role"] = "server"
    assert server["role"] == "server" and server.properties["role"] == "server"
    assert server["missing"] is None
    with pytest.raises(TypeError):
        iter(server)  # a node is not a collection of its properties


# ---------------------------------------------------- 3. TaskDispatcher, ...


@pytest.mark.timeout(30)
def test_dispatchers_in_pipelines_and_experiments() -> None:
    linux = Node("lin", {"os_family": "Linux"})
    windows = Node("win", {"os_family": "Windows"})
    greet = Greet("x")
    assert isinstance(greet.name, str) and greet.name  # without super().__init__()
    pipeline = Pipeline([greet, [Add(1, 1), Greet("y")]])
    experiment = Experiment().map(pipeline, [linux, windows]).append(windows, pipeline)
    kinds = [[type(t).__name__ for t in d.pipeline.tasks] for d in experiment]
    assert kinds == [
        ["LinuxGreeting", "Add", "LinuxGreeting"],
        ["WindowsGreeting", "Add", "WindowsGreeting"],
        ["WindowsGreeting", "Add", "WindowsGreeting"],
    ]
    # a pipeline without dispatchers is shared, not copied
    plain = Pipeline().then(Add(1, 1))
    assert Experiment().map(plain, [linux])[0].pipeline is plain

    class Broken(TaskDispatcher):
        def dispatch(self, node: Node) -> Task:
            return "not a task"  # type: ignore[return-value]

    experiment = Experiment()
    with pytest.raises(TypeError, match="dispatch"):
        experiment.map(Pipeline().then(Broken()), [linux, windows])
    assert len(experiment) == 0

    # add_requirement: this instance only, returns the task
    class WriteToTmp(Task):
        requirements = ["mkdir -p /tmp/mydata"]

        def run(self) -> None:
            return None

    task = WriteToTmp().add_requirement("touch /tmp/mydata/file")
    assert task.requirements == ["mkdir -p /tmp/mydata", "touch /tmp/mydata/file"]
    assert WriteToTmp.requirements == ["mkdir -p /tmp/mydata"]
    assert WriteToTmp().requirements == ["mkdir -p /tmp/mydata"]
    experiment = Experiment().append(Node("dummy", {}), Pipeline().then(task).then(WriteToTmp()))
    assert experiment.deployment_map[0].environment_definition.commands == [
        "mkdir -p /tmp/mydata",
        "touch /tmp/mydata/file",
    ]


# ------------------------------------------------- 4. environment definitions


@pytest.mark.timeout(30)
def test_environment_definition_attributes_and_checks() -> None:
    class Needs(Task):
        requirements = ["apt-get install -y iperf3"]

        def run(self) -> None:
            return None

    pipeline = Pipeline(tasks=[Needs()], early_stopping=False, report_results=False)
    assert pipeline.report_results is False
    assert pipeline.environment_definition == ShellExecution()
    pipeline.environment_definition = ShellExecution(commands=["echo first"])
    deployment = Experiment().append(Node("n"), pipeline).deployment_map[0]
    assert deployment.environment_definition.commands == [
        "echo first",
        "apt-get install -y iperf3",
    ]
    assert pipeline.environment_definition.commands == ["echo first"]  # a copy was changed
    deployment.environment_definition = DockerImage(image="x")
    assert deployment.environment_definition.image == "x"
    assert DockerImage().build_context.python_version
    assert hash(DockerImage(image="a")) == hash(DockerImage(image="a"))
    assert Experiment().deployment_context is None

    # refused before anything is sent: nothing listens at this endpoint
    bad_arguments = ShellExecution(runtime_context=RuntimeContext(additional_arguments=["--x"]))
    reserved = ShellExecution(
        runtime_context=RuntimeContext(environment_variables={"SHOAL_EXECUTOR_ID": "x"})
    )
    with RemoteClient("http://127.0.0.1:9", "nobody", "nothing") as client:
        with pytest.raises(ValueError, match="additional_arguments"):
            client.prepare_experiment(
                Experiment().map(Pipeline(environment_definition=bad_arguments).then(Needs()), "n"),
                "refused",
            )
        with pytest.raises(ValueError, match="SHOAL_"):
            client.prepare_experiment(
                Experiment().map(Pipeline(environment_definition=reserved).then(Needs()), "n"),
                "refused",
            )


# ------------------------------------------------------- 5. basic library


@pytest.mark.timeout(30)
def test_shell_command_argv_and_basic_tasks(tmp_path: Path) -> None:
    # an argument list runs as it is: no shell expands $HOME, ; or the glob
    echo = ShellCommand(["echo", "$HOME;", "*", "ls"])
    assert echo.run() == Success("$HOME; * ls\n\n")  # netUnicorn's text: stdout, "\n", stderr
    missing = ShellCommand(["ls", str(tmp_path / "nonexistent")]).run()
    assert isinstance(missing, Failure) and "nonexistent" in missing.failure()
    both = ShellCommand(["sh", "-c", "echo out; echo err >&2"]).run()
    assert both == Success("out\n\nerr\n")
    assert isinstance(ShellCommand(["no-such-program-here"]).run(), Failure)
    assert isinstance(ShellCommand(["sleep", "5"], timeout=0.2).run(), Failure)
    assert ShellCommand(("true",), "named").name == "named"
    with pytest.raises(ValueError):
        ShellCommand([])
    with pytest.raises(TypeError):
        ShellCommand(["echo", 3])  # type: ignore[list-item]
    # the shell-line form is shoal's as before
    assert ShellCommand("echo a | tr a b").run() == Success("b\n")

    assert DummyTask().run() is True
    assert SleepTask(0.01, "nap").name == "nap"
    assert SleepUntilTask(datetime.now() - timedelta(seconds=5)).run() == 0
    slept = SleepUntilTask(datetime.now() + timedelta(seconds=0.3)).run()
    assert 0 < slept <= 0.3


# ------------------------------------------------------------ 6. flags library


class FakeFlags:
    """Records the executor's flag calls instead of sending them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def set(self, flag: str, values: FlagValues) -> None:
        self.calls.append(("set", flag, values))

    def increment(self, flag: str) -> None:
        self.calls.append(("increment", flag))

    def decrement(self, flag: str) -> None:
        self.calls.append(("decrement", flag))

    def wait_for(self, flag: str, values: FlagValues, timeout: float | None) -> FlagValues:
        self.calls.append(("wait", flag, timeout))
        return values


@pytest.mark.timeout(30)
def test_flag_tasks_match_netunicorns_library(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeFlags()
    monkeypatch.setattr(flags_library, "executor_flags", lambda: fake)
    # netunicorn-library's SetFlagTask and atomic tasks return nothing
    assert SetFlagTask("f", FlagValues(text_value="go", int_value=1)).run() is None
    assert AtomicIncrementFlagTask("f").run() is None
    assert AtomicDecrementFlagTask("f").run() is None

    values = FlagValues(text_value="stage 1", int_value=3)
    # netUnicorn's signature: flag_name, values, sleep_time, attempts, then name
    waiter = WaitForExactFlagResultTask("f", values, 0.5, 5, "wait")
    assert (waiter.sleep_time, waiter.attempts, waiter.name) == (0.5, 5, "wait")
    assert waiter.run() == {"text_value": "stage 1", "int_value": 3}
    assert fake.calls[-1] == ("wait", "f", 2.0)  # the time of netUnicorn's 5th look
    assert WaitForExactFlagResultTask("f", values).timeout is None  # waits for ever
    assert WaitForExactFlagResultTask("f", values, attempts=1).timeout == 0
    assert WaitForExactFlagResultTask("f", values, attempts=100, timeout=3).timeout == 3
    assert WaitForExactFlagResultTask("f", values, timeout=7).timeout == 7
    with pytest.raises(ValueError):
        WaitForExactFlagResultTask("f", values, attempts=0)
    with pytest.raises(ValueError):
        WaitForExactFlagResultTask("f", values, sleep_time=-1)

    assert values.dict() == {"text_value": "stage 1", "int_value": 3}
    assert values.model_dump() == values.dict() == values.to_dict()
    assert FlagValues(**values.dict()) == values
    # the module's docstring said they return 0
    assert "the atomic tasks return None" in " ".join((flags_library.__doc__ or "").split())


# ------------------------------------------- 7. RemoteClient, Result's methods


@pytest.mark.timeout(30)
def test_remote_client_accepts_authentication_context() -> None:
    context = {"aws": {"token": "t"}}
    with RemoteClient("http://127.0.0.1:9", "alice", "secret", context) as client:
        assert client.authentication_context == context
    with RemoteClient(
        endpoint="http://127.0.0.1:9", login="a", password="b", authentication_context=None
    ) as client:
        assert client.authentication_context is None
    with pytest.raises(TypeError, match="authentication_context"):
        RemoteClient("http://127.0.0.1:9", "a", "b", 30.0)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_result_map_bind_alt_lash_and_subscripting() -> None:
    # tasks_and_dispatchers.ipynb annotates with the containers
    successful_object: Success[str] = Success("some value")
    failed_object: Failure[str] = Failure("meh")
    annotation: Result[int, str] = Success(1)
    assert Success[str].__origin__ is Success and Result[int, str].__args__ == (int, str)
    assert is_successful(successful_object) and annotation.unwrap() == 1

    assert Success(2).map(lambda x: x * 10) == Success(20)
    assert failed_object.map(len) is failed_object
    assert Success(2).bind(lambda x: Failure(f"no {x}")) == Failure("no 2")
    assert failed_object.bind(lambda x: Success(x)) is failed_object
    assert Failure("e").alt(str.upper) == Failure("E")
    assert successful_object.alt(str.upper) is successful_object
    assert Failure("e").lash(lambda e: Success(f"recovered {e}")) == Success("recovered e")
    assert successful_object.lash(lambda e: Failure(e)) is successful_object
    # upstream Ping's way: map over the text
    assert Success("rtt 1 ms\n").map(str.strip).unwrap() == "rtt 1 ms"
    with pytest.raises(TypeError, match="bind"):
        Success(1).bind(lambda x: x + 1)
    with pytest.raises(TypeError, match="lash"):
        Failure(1).lash(lambda x: x + 1)
