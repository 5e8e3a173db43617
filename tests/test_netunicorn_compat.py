"""netUnicorn code on shoal's own API, changing only its imports.

Each gap of the audit (/work/s10/audit-netunicorn.md) has a test here or, when
it needs no cluster, in test_netunicorn_objects.py. The code under test is
written the way netUnicorn's examples write it (with ``netunicorn.base`` /
``netunicorn.client`` / ``returns`` swapped for ``shoal``); results, dispatchers
and environment definitions are shown on a real local cluster.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import (
    DockerImage,
    Experiment,
    ExperimentStatus,
    Failure,
    LocalCluster,
    Node,
    Pipeline,
    RemoteClient,
    Result,
    RuntimeContext,
    ShellExecution,
    Success,
    Task,
    TaskDispatcher,
    is_successful,
)

# ----------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    properties = {"a": {"os_family": "Linux"}, "b": {"os_family": "Windows"}}
    with LocalCluster(["a", "b"], properties=properties) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[RemoteClient]:
    with cluster.client() as c:
        yield c


def wait_while(client: RemoteClient, name: str, status: ExperimentStatus, timeout: float = 90):
    """Until the experiment leaves ``status`` (PREPARING or RUNNING), as netUnicorn's
    notebooks wait; woken by the controller's change, not by polling."""
    until = "ready" if status == ExperimentStatus.PREPARING else "finished"
    info = client.wait(name, timeout=timeout, until=until)
    assert info.status != status, info
    return info


def prepare_and_run(client: RemoteClient, experiment: Experiment, name: str):
    """prepare, wait for READY, start, wait until it stops RUNNING: the notebook's steps."""
    client.prepare_experiment(experiment, name)
    info = wait_while(client, name, ExperimentStatus.PREPARING)
    assert info.status == ExperimentStatus.READY, info
    client.start_execution(name)
    return wait_while(client, name, ExperimentStatus.RUNNING), info


# Tasks as netUnicorn users write them (shipped by value: this file is not installed).


class Add(Task):
    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b
        super().__init__()

    def run(self) -> int:
        return self.a + self.b


class Boom(Task):
    def run(self) -> None:
        raise RuntimeError("boom on purpose")


class ReadFile(Task):
    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        self.path = path
        super().__init__(*args, **kwargs)

    def run(self) -> str:
        return Path(self.path).read_text()


class ReadEnvironment(Task):
    """What the executor's environment holds, and what a child process of it sees."""

    def __init__(self, variable: str, *args: Any, **kwargs: Any) -> None:
        self.variable = variable
        super().__init__(*args, **kwargs)

    def run(self) -> tuple[str | None, str]:
        child = subprocess.run(
            ["sh", "-c", f'printf %s "${self.variable}"'], capture_output=True, text=True
        )
        return os.environ.get(self.variable), child.stdout


class LinuxGreeting(Task):
    def __init__(self, who: str) -> None:
        self.who = who
        super().__init__()

    def run(self) -> str:
        return f"linux says hi to {self.who}"


class WindowsGreeting(Task):
    def __init__(self, who: str) -> None:
        self.who = who
        super().__init__()

    def run(self) -> str:
        return f"windows says hi to {self.who}"


class Greet(TaskDispatcher):
    # as in netUnicorn's tutorial: no super().__init__() call
    def __init__(self, who: str) -> None:
        self.who = who

    def dispatch(self, node: Node) -> Task:
        if node.properties.get("os_family", "").lower() == "linux":
            return LinuxGreeting(self.who)
        return WindowsGreeting(self.who)


class ByRole(TaskDispatcher):
    def dispatch(self, node: Node) -> Task:
        return Add(len(node["role"]), 0)


# ------------------------------------------------------ 1. (result, logs) pairs


@pytest.mark.timeout(120)
def test_report_result_unpacks_into_result_and_logs_on_a_cluster(client: RemoteClient) -> None:
    good = Pipeline().then(Add(1, 2))
    bad = Pipeline().then(Boom())
    nodes = client.get_nodes()
    experiment = Experiment().map(good, nodes.filter(lambda n: n.name == "a"))
    experiment.map(bad, nodes.filter(lambda n: n.name == "b"))
    info, _ = prepare_and_run(client, experiment, "result-and-logs")
    assert info.status == ExperimentStatus.FINISHED

    seen = {}
    for report in info.execution_result:
        # basic_example.ipynb's results cell
        result, log = report.result
        assert isinstance(result, Result)
        data = result.unwrap() if is_successful(result) else result
        assert isinstance(log, list)
        for line in log:
            print(line.strip())
        seen[report.node.name] = (result, data, log)

    ok, ok_data, ok_log = seen["a"]
    assert isinstance(ok, Success) and list(ok_data.values()) == [[Success(3)]]
    # The status reply carries no log lines; the list is empty (client.get_logs has them).
    assert ok_log == []
    failed, _, _ = seen["b"]
    assert isinstance(failed, Failure)
    assert "boom on purpose" in next(iter(failed.failure().values()))[0].failure()

    # shoal's own way of reading it keeps working on the same object
    by_node = {r.node.name: r for r in info.execution_result}
    assert by_node["a"].result.is_success and not by_node["b"].result.is_success
    assert list(by_node["a"].result.unwrap().values()) == [[Success(3)]]
    assert by_node["b"].result.failure() == failed.failure()
    assert is_successful(by_node["a"].result) and not is_successful(by_node["b"].result)
    assert "Result: <class 'shoal.model.result.Success'>" in repr(by_node["a"])


# ---------------------------------------------------- 3. TaskDispatcher, ...


@pytest.mark.timeout(120)
def test_task_dispatcher_and_add_requirement_on_a_cluster(
    client: RemoteClient, tmp_path: Path
) -> None:
    marker = tmp_path / "requirement-ran"
    nodes = client.get_nodes()
    nodes.filter(lambda n: n.name == "a").set_property("role", "server")
    nodes.filter(lambda n: n.name == "b").set_property("role", "client")
    pipeline = (
        Pipeline()
        .then(Greet("shoal"))
        .then(ByRole())
        .then(ReadFile(str(marker), name="read").add_requirement(f"echo ready > {marker}"))
    )
    experiment = Experiment()
    for node in nodes:
        experiment.append(node, pipeline)
    # dispatched when put on the nodes, as netUnicorn does: each deployment has its task
    by_node = {d.node.name: d for d in experiment.deployment_map}
    first, second = by_node["a"], by_node["b"]
    assert [type(t) for t in first.pipeline.tasks[:2]] == [LinuxGreeting, Add]
    assert [type(t) for t in second.pipeline.tasks[:2]] == [WindowsGreeting, Add]
    assert pipeline.tasks[0].__class__ is Greet  # the pipeline itself is unchanged
    assert f"echo ready > {marker}" in first.environment_definition.commands

    info, _ = prepare_and_run(client, experiment, "dispatchers")
    assert info.status == ExperimentStatus.FINISHED
    steps = {}
    for report in info.execution_result:
        result, _log = report.result
        steps[report.node.name] = [values[0].unwrap() for values in result.unwrap().values()]
    assert steps == {
        "a": ["linux says hi to shoal", len("server"), "ready\n"],
        "b": ["windows says hi to shoal", len("client"), "ready\n"],
    }


# ------------------------------------------------- 4. environment definitions


@pytest.mark.timeout(150)
def test_environment_definitions_on_a_cluster(
    cluster: LocalCluster, client: RemoteClient, tmp_path: Path
) -> None:
    prepared = tmp_path / "prepared"
    environment = ShellExecution(
        commands=[f"echo environment > {prepared}"],
        runtime_context=RuntimeContext(environment_variables={"GREETING": "hello from env"}),
    )
    pipeline = Pipeline(environment_definition=environment, report_results=True)
    pipeline.then(ReadFile(str(prepared), name="read")).then(
        ReadEnvironment("GREETING", name="env")
    )
    nodes = client.get_nodes()
    experiment = Experiment(deployment_context={"docker": {"key": "value"}})
    experiment.map(pipeline, [nodes["a"], nodes["b"]])
    # one deployment gets its own environment: other variables, same commands
    second = experiment.deployment_map[1]
    assert second.node.name == "b"
    assert second.environment_definition.commands == [f"echo environment > {prepared}"]
    second.environment_definition.runtime_context.environment_variables["GREETING"] = "b's own"
    assert pipeline.environment_definition.runtime_context.environment_variables == {
        "GREETING": "hello from env"
    }

    info, _ = prepare_and_run(client, experiment, "environments")
    assert info.status == ExperimentStatus.FINISHED
    seen = {}
    for report in info.execution_result:
        result, _log = report.result
        steps = result.unwrap()
        seen[report.node.name] = (steps["read"][0].unwrap(), steps["env"][0].unwrap())
    assert seen == {
        "a": ("environment\n", ("hello from env", "hello from env")),
        "b": ("environment\n", ("b's own", "b's own")),
    }
    # the variables went to the executors, not to this process
    assert "GREETING" not in os.environ
    # They are kept with each deployment in the store (a Prepare sent again after
    # an agent reconnects has them too), not in the pipeline, which went once.
    database = sqlite3.connect(cluster.db_url.removeprefix("sqlite+aiosqlite:///"))
    try:
        rows = database.execute(
            "SELECT d.node, d.environment, d.pipeline FROM deployments d"
            " JOIN experiments e ON e.id = d.experiment_id WHERE e.name = 'environments'"
        ).fetchall()
    finally:
        database.close()
    environments = {node: json.loads(environment) for node, environment, _ in rows}
    assert environments == {"a": {"GREETING": "hello from env"}, "b": {"GREETING": "b's own"}}
    assert len({pipeline for _, _, pipeline in rows}) == 1


@pytest.mark.timeout(150)
def test_docker_image_fails_its_deployment_at_prepare_naming_the_image(
    client: RemoteClient,
) -> None:
    docker = Pipeline(environment_definition=DockerImage(image="alpine:3.19")).then(Add(1, 1))
    plain = Pipeline().then(Add(2, 2))
    nodes = client.get_nodes()
    experiment = Experiment()
    experiment.append(nodes["a"], plain)
    experiment.append(nodes["b"], docker)
    client.prepare_experiment(experiment, "docker-image")
    ready = wait_while(client, "docker-image", ExperimentStatus.PREPARING)
    # netUnicorn's notebook reads this after READY
    assert ready.status == ExperimentStatus.READY
    by_node = {d.node.name: d for d in ready.experiment}
    assert by_node["a"].prepared and by_node["a"].error is None
    assert not by_node["b"].prepared
    assert 'DockerImage(image="alpine:3.19") cannot run on shoal' in by_node["b"].error
    client.start_execution("docker-image")
    done = wait_while(client, "docker-image", ExperimentStatus.RUNNING)
    results = {r.node.name: r for r in done.execution_result}
    assert results["a"].result.unwrap()
    assert "alpine:3.19" in results["b"].error
    # DockerImage() without an image runs on the node, as ShellExecution does
    unnamed = Pipeline(environment_definition=DockerImage(commands=["true"])).then(Add(3, 3))
    info, _ = prepare_and_run(client, Experiment().map(unnamed, [nodes["a"]]), "docker-no-image")
    assert info.status == ExperimentStatus.FINISHED
