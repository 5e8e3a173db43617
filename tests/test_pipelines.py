"""The pipelines front-end on a real local cluster: steps, results, lifecycle."""

from __future__ import annotations

import pytest

from shoal import (
    Experiment,
    ExperimentStatus,
    Failure,
    FlagValues,
    Pipeline,
    RemoteClient,
    RemoteClientException,
    Success,
    Task,
)
from shoal.library.basic import ShellCommand, SleepTask
from shoal.library.flags import SetFlagTask, WaitForExactFlagResultTask


class Add(Task):
    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = a, b

    def run(self) -> int:
        return self.a + self.b


class SumPrevious(Task):
    def run(self) -> int:
        return sum(r[0].unwrap() for r in self.previous_steps.values())


class Shout(Task):
    def run(self) -> str:
        print("hello from the node", flush=True)
        return "done"


class Boom(Task):
    def run(self) -> None:
        raise ValueError("the step went boom")


class NeedsTool(Task):
    requirements = ["echo installing && exit 3"]

    def run(self) -> str:
        return "never"


def one_node(client: RemoteClient, name: str = "snl-server-5"):
    return client.get_nodes().filter(lambda n: n.name == name)


def run(client: RemoteClient, pipeline: Pipeline, name: str, node: str = "snl-server-5"):
    client.prepare_experiment(Experiment().map(pipeline, one_node(client, node)), name)
    client.wait(name, until="ready", timeout=60)
    client.start_execution(name)
    return client.wait(name, timeout=60)


@pytest.mark.timeout(60)
def test_parallel_steps_and_previous_results(client: RemoteClient) -> None:
    pipeline = Pipeline().then([Add(1, 2), Add(3, 4)]).then(SumPrevious(name="sum"))
    info = run(client, pipeline, "parallel")
    # netUnicorn's shape: the result and the deployment's log lines
    result, _logs = info.execution_result[0].result
    assert isinstance(result, Success)
    assert result.unwrap()["sum"] == [Success(10)]
    assert list(result.unwrap().values())[:2] == [[Success(3)], [Success(7)]]


@pytest.mark.timeout(60)
def test_step_that_raises_gives_failure_with_traceback(client: RemoteClient) -> None:
    pipeline = (
        Pipeline()
        .then(Add(1, 1))
        .then(Boom(name="boom"))
        .then(
            Add(
                2,
                2,
            )
        )
    )
    info = run(client, pipeline, "raises")
    assert info.status is ExperimentStatus.FINISHED
    result, _logs = info.execution_result[0].result
    match result:
        case Failure(steps):
            assert "ValueError: the step went boom" in steps["boom"][0].failure()
            assert "Traceback" in steps["boom"][0].failure()
            assert len(steps) == 2, "the pipeline stops at the failing step"
        case _:
            pytest.fail(f"expected a Failure, got {result!r}")


@pytest.mark.timeout(60)
def test_failing_requirement_is_reported_at_prepare(client: RemoteClient) -> None:
    nodes = client.get_nodes()
    experiment = (
        Experiment()
        .map(Pipeline().then(NeedsTool()), nodes.filter(lambda n: n.name == "snl-server-5"))
        .map(Pipeline().then(Add(1, 1)), nodes.filter(lambda n: n.name.startswith("raspi")).take(1))
    )
    client.prepare_experiment(experiment, "requirements")
    ready = client.wait("requirements", until="ready", timeout=60)
    assert ready.status is ExperimentStatus.READY
    bad, good = ready.experiment.deployment_map
    assert not bad.prepared and good.prepared
    assert "echo installing && exit 3" in bad.error and "code 3" in bad.error
    assert "installing" in bad.error
    client.start_execution("requirements")
    info = client.wait("requirements", timeout=60)
    # One deployment never ran: the experiment says so, with the count.
    assert info.status is ExperimentStatus.FAILED
    assert "1 of 2 deployments failed" in client.raw_status("requirements")["error"]
    never_ran, _logs = info.execution_result[0].result
    assert isinstance(never_ran, Failure)
    assert info.execution_result[1].result.unwrap()  # the good node still ran


@pytest.mark.timeout(30)
def test_unknown_node_is_a_clear_error_at_prepare(client: RemoteClient) -> None:
    experiment = Experiment().map(Pipeline().then(Add(1, 1)), ["no-such-node"])
    with pytest.raises(RemoteClientException) as caught:
        client.prepare_experiment(experiment, "unknown-node")
    assert caught.value.status_code == 400
    assert "no-such-node" in str(caught.value)
    assert "unknown-node" not in client.get_experiments()


@pytest.mark.timeout(60)
def test_log_lines_are_streamed_and_stored(client: RemoteClient) -> None:
    run(client, Pipeline().then(Shout()), "logs")
    lines = [entry["line"] for entry in client.get_logs("logs")]
    assert "hello from the node" in lines


@pytest.mark.timeout(60)
def test_library_shell_and_sleep(client: RemoteClient) -> None:
    pipeline = (
        Pipeline()
        .then(ShellCommand("echo shoal", name="echo"))
        .then(SleepTask(0.01, name="sleep"))
        .then(ShellCommand("exit 4", name="fails"))
    )
    steps = run(client, pipeline, "library").execution_result[0].result.failure()
    assert steps["echo"] == [Success("shoal\n")]
    assert steps["sleep"] == [Success(0.01)]
    assert "exited with code 4" in steps["fails"][0].failure()


@pytest.mark.timeout(60)
def test_prepare_and_start_are_idempotent_and_names_reusable(client: RemoteClient) -> None:
    experiment = Experiment().map(Pipeline().then(Add(2, 3)), one_node(client))
    assert client.prepare_experiment(experiment, "again") == "again"
    assert client.prepare_experiment(experiment, "again") == "again"
    ready = client.wait("again", until="ready")
    assert len(ready.experiment.deployment_map) == 1  # no second deployment
    assert client.start_execution("again") == "again"
    assert client.start_execution("again") == "again"
    first = client.wait("again")
    assert first.execution_result[0].result.unwrap()
    client.delete_experiment("again")
    assert "again" not in client.get_experiments()
    client.prepare_experiment(
        Experiment().map(Pipeline().then(Add(5, 5)), one_node(client)), "again"
    )
    client.wait("again", until="ready")
    client.start_execution("again")
    steps = client.wait("again").execution_result[0].result.unwrap()
    assert list(steps.values()) == [[Success(10)]]


@pytest.mark.timeout(60)
def test_cancel_stops_a_waiting_pipeline(client: RemoteClient) -> None:
    pipeline = (
        Pipeline()
        .then(SetFlagTask("started", FlagValues(int_value=1)))
        .then(WaitForExactFlagResultTask("never", FlagValues(int_value=1)))
    )
    client.prepare_experiment(Experiment().map(pipeline, one_node(client)), "to-cancel")
    client.wait("to-cancel", until="ready")
    client.start_execution("to-cancel")
    client.wait_flag("to-cancel", "started", FlagValues(int_value=1), timeout=30)
    with pytest.raises(RemoteClientException) as caught:
        client.delete_experiment("to-cancel")
    assert caught.value.status_code == 409 and "cancel" in str(caught.value)
    client.cancel_experiment("to-cancel")
    info = client.wait("to-cancel", timeout=30)
    assert info.status is ExperimentStatus.CANCELLED
    assert info.execution_result[0].state == "cancelled"
    client.delete_experiment("to-cancel")


@pytest.mark.timeout(60)
def test_start_before_ready_is_refused(client: RemoteClient) -> None:
    pipeline = Pipeline().then(Add(1, 1))
    with pytest.raises(RemoteClientException) as caught:
        client.start_execution("never-prepared")
    assert caught.value.status_code == 404
    client.prepare_experiment(Experiment().map(pipeline, one_node(client)), "quick")
    client.wait("quick", until="ready")
    client.start_execution("quick")
    assert client.wait("quick").status is ExperimentStatus.FINISHED


@pytest.mark.timeout(60)
def test_cancel_executors(client: RemoteClient) -> None:
    nodes = client.get_nodes().filter(lambda n: n.name.startswith("raspi")).take(2)
    pipeline = Pipeline().then(WaitForExactFlagResultTask("go", FlagValues(int_value=1)))
    client.prepare_experiment(Experiment().map(pipeline, nodes), "executors")
    ready = client.wait("executors", until="ready")
    first, second = ready.experiment.deployment_map
    client.start_execution("executors")
    client.cancel_executors([first.executor_id])
    client.set_flag_values("executors", "go", FlagValues(int_value=1))
    info = client.wait("executors", timeout=30)
    states = {r.node.name: r.state for r in info.execution_result}
    assert states == {first.node.name: "cancelled", second.node.name: "finished"}
