"""netUnicorn code on shoal's own API: the model and library gaps of the audit
(/work/s10/audit-netunicorn.md items 2, 9, 12-16, 19, 20, 22) fixed after the
first round, which tests/test_netunicorn_compat.py covers.

Code under test is written as netUnicorn's users write it, with the imports
swapped; what involves the controller runs on a real local cluster.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from shoal import (
    Experiment,
    ExperimentStatus,
    FlagValues,
    LocalCluster,
    Node,
    Nodes,
    Pipeline,
    ShellExecution,
    Success,
    Task,
)
from shoal import RemoteClient as ShoalRemoteClient
from shoal.compat.netunicorn.client import RemoteClient, RemoteClientException
from shoal.library.basic import DummyTask, SleepTask
from shoal.library.flags import (
    AtomicIncrementFlagTask,
    GetFlagTask,
    SetFlagTask,
    WaitForExactFlagResultTask,
)
from shoal.library.utils.network import PortKnock
from shoal.library.utils.sleep import RandomSleepTask
from shoal.model import Architecture, Deployment, DockerImage


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["n"]) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[RemoteClient]:
    """The netUnicorn-flavoured client: what ``netunicorn.client`` becomes."""
    with RemoteClient(cluster.endpoint, cluster.login, cluster.password) as c:
        yield c


class Add(Task):
    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b
        super().__init__()

    def run(self) -> int:
        return self.a + self.b


def finished(client: RemoteClient, name: str, until: str = "finished") -> ExperimentStatus:
    """The status a netUnicorn polling loop sees once the run has settled (woken by
    the controller, not polled): ``while status != FINISHED`` ends iff FINISHED."""
    client.wait(name, timeout=60, until=until)
    return client.get_experiment_status(name).status


# ------------------------------------------- 2. netUnicorn's statuses, opt-in


@pytest.mark.timeout(120)
def test_compat_client_reports_failed_and_cancelled_runs_as_finished(
    cluster: LocalCluster, client: RemoteClient
) -> None:
    shoal_client = cluster.client()
    node = client.get_nodes()[0]

    # every deployment fails at prepare: shoal says FAILED
    broken = Pipeline().then(Add(1, 1).add_requirement("echo no such tool >&2; exit 3"))
    client.prepare_experiment(Experiment().map(broken, [node]), "nu-failed")
    assert finished(client, "nu-failed") == ExperimentStatus.FINISHED
    info = client.get_experiment_status("nu-failed")
    assert info.shoal_status == ExperimentStatus.FAILED
    assert "no such tool" in info.experiment[0].error
    assert shoal_client.get_experiment_status("nu-failed").status == ExperimentStatus.FAILED
    assert client.get_experiments()["nu-failed"].status == ExperimentStatus.FINISHED

    # cancelled while running: shoal says CANCELLED
    hold = Pipeline().then(WaitForExactFlagResultTask("never", FlagValues("set"), timeout=60))
    client.prepare_experiment(Experiment().map(hold, [node]), "nu-cancelled")
    assert finished(client, "nu-cancelled", until="ready") == ExperimentStatus.READY
    client.start_execution("nu-cancelled")
    client.cancel_experiment("nu-cancelled")
    assert finished(client, "nu-cancelled") == ExperimentStatus.FINISHED
    cancelled = client.get_experiment_status("nu-cancelled")
    assert cancelled.shoal_status == ExperimentStatus.CANCELLED
    assert cancelled.execution_result[0].state == "cancelled"
    assert shoal_client.get_experiment_status("nu-cancelled").status == ExperimentStatus.CANCELLED

    # a good run is FINISHED for both, and the other statuses pass unchanged
    client.prepare_experiment(Experiment().map(Pipeline().then(Add(2, 3)), [node]), "nu-good")
    ready = client.wait("nu-good", until="ready")
    assert (ready.status, ready.shoal_status) == (ExperimentStatus.READY,) * 2
    client.start_execution("nu-good")
    assert finished(client, "nu-good") == ExperimentStatus.FINISHED
    outcome, _logs = client.get_experiment_status("nu-good").execution_result[0].result
    assert list(outcome.unwrap().values()) == [[Success(5)]]

    # netUnicorn's client answers these two differently from shoal's
    assert isinstance(client.cancel_executors([]), str)
    assert client.healthcheck() is True
    dead = RemoteClient("http://127.0.0.1:9", "u", "p", retry_deadline=0)
    with dead, pytest.raises(RemoteClientException, match="not healthy"):
        dead.healthcheck()
    with ShoalRemoteClient("http://127.0.0.1:9", "u", "p", retry_deadline=0) as plain:
        assert plain.healthcheck() is False


def test_experiment_status_from_json_and_as_netunicorn() -> None:
    assert ExperimentStatus.from_json(4) is ExperimentStatus.FINISHED
    assert ExperimentStatus.from_json("CANCELLED") is ExperimentStatus.CANCELLED
    with pytest.raises(ValueError, match="unknown experiment status 9"):
        ExperimentStatus.from_json(9)
    assert ExperimentStatus.FAILED.as_netunicorn is ExperimentStatus.FINISHED
    assert ExperimentStatus.RUNNING.as_netunicorn is ExperimentStatus.RUNNING


# ----------------------------------------------------------- 9. FlagValues


def test_flag_values_default_conversion_and_pydantic_methods() -> None:
    values = FlagValues(text_value="x")
    assert values.int_value == 0 and values.int_value + 1 == 1
    # pydantic's conversions
    assert FlagValues(int_value="3") == FlagValues(int_value=3)
    assert FlagValues(int_value=" 7 ").int_value == 7
    assert FlagValues(int_value=4.0).int_value == 4
    assert FlagValues(text_value=b"go").text_value == "go"
    assert FlagValues(int_value=None).int_value == 0  # the wire's "no number"
    for bad, error in [("x", ValueError), (3.5, ValueError), ("2.5", ValueError), ([1], TypeError)]:
        with pytest.raises(error, match="int_value"):
            FlagValues(int_value=bad)
    with pytest.raises(TypeError, match="int_value"):
        FlagValues(int_value=True)
    with pytest.raises(TypeError, match="text_value"):
        FlagValues(text_value=3)  # type: ignore[arg-type]
    # pydantic's methods
    values = FlagValues("a", 2)
    assert values.model_dump() == values.dict() == {"text_value": "a", "int_value": 2}
    assert json.loads(values.json()) == values.model_dump()
    assert values.model_dump_json() == '{"text_value":"a","int_value":2}'
    assert FlagValues.model_validate({"text_value": "b"}) == FlagValues("b", 0)
    assert FlagValues.parse_obj(values) == values
    assert FlagValues.from_dict({"text_value": "c", "int_value": 1, "version": 4}) == FlagValues(
        "c", 1
    )
    with pytest.raises(TypeError, match="from a dict"):
        FlagValues.model_validate(["a", 1])  # type: ignore[arg-type]
    assert repr(FlagValues("a")) == "FlagValues(text_value='a', int_value=0)"


@pytest.mark.timeout(120)
def test_flag_values_default_zero_over_the_wire(client: RemoteClient) -> None:
    node = client.get_nodes()[0]
    # SetFlagTask and the wait both leave int_value out: they meet at 0
    setter = Pipeline().then(SetFlagTask("phase", FlagValues(text_value="go")))
    waiter = Pipeline().then(
        WaitForExactFlagResultTask("phase", FlagValues(text_value="go"), timeout=30)
    )
    counter = Pipeline().then(AtomicIncrementFlagTask("count")).then(GetFlagTask("count"))
    experiment = Experiment().map(waiter, [node]).map(setter, [node]).map(counter, [node])
    client.prepare_experiment(experiment, "flags-zero")
    client.wait("flags-zero", until="ready")
    client.start_execution("flags-zero")
    info = client.wait("flags-zero", timeout=60)
    assert info.shoal_status == ExperimentStatus.FINISHED, info
    waited = info.execution_result[0].result.unwrap()
    assert list(waited.values()) == [[Success({"text_value": "go", "int_value": 0})]]
    counted = info.execution_result[2].result.unwrap()
    assert list(counted.values())[1] == [Success(FlagValues(None, 1))]
    assert client.get_flag_values("flags-zero", "phase") == FlagValues("go", 0)
    client.set_flag_values("flags-zero", "typed", FlagValues(text_value="t", int_value="5"))
    assert client.get_flag_values("flags-zero", "typed").int_value == 5


# ------------------------------------------- 14, 15, 16. Experiment, Pipeline


def test_experiment_addition_and_deployment_context() -> None:
    pipeline = Pipeline().then(DummyTask())
    first = Experiment(deployment_context={"salt": {"a": "1"}}).map(pipeline, [Node("x")])
    second = Experiment(deployment_context={"docker": {"b": "2"}}).append(Node("y"), pipeline)
    combined = first + second
    assert [d.node.name for d in combined] == ["x", "y"]
    assert combined.deployment_context == {"salt": {"a": "1"}, "docker": {"b": "2"}}
    # a new experiment: neither side changes, and this side's deployments are copies
    assert len(first) == 1 and len(second) == 1
    assert first.deployment_context == {"salt": {"a": "1"}}
    assert combined[0] is not first[0] and combined[1] is second[0]
    assert (Experiment() + second).deployment_context == {"docker": {"b": "2"}}
    assert (first + Experiment()).deployment_context == {"salt": {"a": "1"}}
    with pytest.raises(TypeError):
        first + Node("z")  # type: ignore[operator]


def test_pipeline_copy_and_report_results() -> None:
    environment = ShellExecution(commands=["true"])
    task = Add(1, 2)
    original = Pipeline(
        early_stopping=False, report_results=False, environment_definition=environment
    ).then(task)
    copied = original.copy()
    assert copied.name != original.name
    assert (copied.early_stopping, copied.report_results) == (False, False)
    assert copied.environment_definition is environment
    assert copied.tasks == [task]
    copied.then(DummyTask())
    assert len(copied) == 2 and len(original) == 1


def test_deployment_keep_alive_and_cleanup() -> None:
    pipeline = Pipeline().then(DummyTask())
    deployment = Experiment().map(pipeline, [Node("x")])[0]
    assert (deployment.keep_alive_timeout_minutes, deployment.cleanup) == (10, True)
    deployment.keep_alive_timeout_minutes = 30
    custom = Deployment(Node("y"), pipeline, keep_alive_timeout_minutes=0.5, cleanup=False)
    assert (custom.keep_alive_timeout_minutes, custom.cleanup) == (0.5, False)
    for bad in (0, -1, "10", True):
        with pytest.raises(ValueError, match="keep_alive_timeout_minutes"):
            Deployment(Node("z"), pipeline, keep_alive_timeout_minutes=bad)


# ----------------------------------------------------- 12, 13. Nodes and Node


def test_node_architecture_additional_properties_and_environments() -> None:
    arm = Node("raspi", {"ipv4": "10.0.0.2"}, Architecture.LINUX_ARM64)
    assert arm.architecture is Architecture.LINUX_ARM64
    # a shoal agent's string becomes the member, and either spelling compares equal
    amd = Node.from_dict({"name": "server", "architecture": "linux/amd64"})
    assert amd.architecture is Architecture.LINUX_AMD64 and amd.architecture == "linux/amd64"
    assert amd.architecture.value == "linux/amd64"
    assert {Architecture.LINUX_AMD64: "x86"}["linux/amd64"] == "x86"
    assert Node("plain").architecture is Architecture.UNKNOWN
    odd = Node("old-pi", architecture="linux/arm/v7")  # no member: kept as the agent said
    assert odd.architecture == "linux/arm/v7"
    assert amd.to_dict()["architecture"] == "linux/amd64"
    assert type(amd.to_dict()["architecture"]) is str
    with pytest.raises(TypeError, match="architecture"):
        Node("bad", architecture=64)  # type: ignore[arg-type]

    assert arm.additional_properties == {}
    arm.additional_properties["connector"] = "salt"
    assert Node.from_dict(arm.to_dict()).additional_properties == {"connector": "salt"}

    assert arm.available_environments == {DockerImage, ShellExecution}
    only_shell = Node("s", {"netunicorn-environments": ["ShellExecution"]})
    assert only_shell.available_environments == {ShellExecution}


def test_nodes_pop_nodes_and_setitem() -> None:
    nodes = Nodes([Node("a"), Node("b"), Node("c")])
    assert nodes.nodes == [Node("a"), Node("b"), Node("c")]
    assert nodes.pop(1).name == "b"
    assert nodes.names() == ["a", "c"]
    nodes.nodes.append(Node("d"))  # the pool's own list, as netUnicorn's attribute
    assert nodes.names() == ["a", "c", "d"]
    nodes[0] = Node("z")
    assert nodes.names() == ["z", "c", "d"]
    assert nodes.pop().name == "d"
    with pytest.raises(IndexError, match="out of range for 2 nodes"):
        nodes.pop(5)
    with pytest.raises(TypeError, match="Node objects"):
        nodes[0] = "a"  # type: ignore[assignment]
    with pytest.raises(IndexError, match="empty"):
        Nodes().pop()


# ---------------------------------------------------------- 22. library utils


def test_random_sleep_task_dispatches_a_sleep_per_node() -> None:
    pipeline = Pipeline().then(RandomSleepTask(2, 4))
    experiment = Experiment().map(pipeline, [Node("a"), Node("b")])
    for deployment in experiment:
        (sleep,) = deployment.pipeline.tasks
        assert isinstance(sleep, SleepTask) and 2 <= sleep.seconds <= 4
    with pytest.raises(ValueError, match="above seconds_max"):
        RandomSleepTask(5, 1)
    with pytest.raises(TypeError, match="seconds_min"):
        RandomSleepTask(0.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        PortKnock("127.0.0.1", 70000)
    with pytest.raises(TypeError, match="ip"):
        PortKnock(None, 80)  # type: ignore[arg-type]


@pytest.mark.timeout(120)
def test_port_knock_and_random_sleep_on_a_cluster(client: RemoteClient) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(60)
        port = listener.getsockname()[1]
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]  # bound, not listening: refused
        pipeline = (
            Pipeline()
            .then(PortKnock("127.0.0.1", port))
            .then(PortKnock("127.0.0.1", dead_port, timeout=5))
            .then(RandomSleepTask(0, 0))
        )
        node = client.get_nodes()[0]
        client.prepare_experiment(Experiment().map(pipeline, [node]), "knock")
        client.wait("knock", until="ready")
        client.start_execution("knock")
        connection, _ = listener.accept()  # the knock arrives (or this times out)
        connection.close()
        closed.close()
        info = client.wait("knock", timeout=60)
    results = list(info.execution_result[0].result.unwrap().values())
    assert results == [[Success(0)], [Success(0)], [Success(0)]]
