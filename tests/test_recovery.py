"""Nodes that die and controllers that restart: nothing waits forever, nothing stored is lost."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import time

import pytest

from processes import shoal
from shoal import (
    Experiment,
    ExperimentStatus,
    FlagValues,
    LocalCluster,
    Pipeline,
    Success,
    Task,
)
from shoal.library.flags import GetFlagTask, SetFlagTask, WaitForExactFlagResultTask
from waiting import wait_until


def barrier_pipeline(label: str) -> Pipeline:
    """Announce itself through a flag, then wait for the test to say go."""
    return (
        Pipeline()
        .then(SetFlagTask(f"{label}-started", FlagValues(int_value=1), name="announce"))
        .then(WaitForExactFlagResultTask("go", FlagValues("go", 1), name="wait"))
        .then(GetFlagTask("go", name="read"))
    )


@pytest.mark.timeout(90)
def test_agent_killed_mid_pipeline_is_lost_and_the_experiment_fails(tmp_path) -> None:
    with LocalCluster(
        ["a", "b"], heartbeat_interval=0.2, heartbeat_timeout=1.5, lost_timeout=4
    ) as cluster:
        client = cluster.client()
        nodes = client.get_nodes()
        experiment = (
            Experiment()
            .map(barrier_pipeline("a"), nodes.filter(lambda n: n.name == "a"))
            .map(barrier_pipeline("b"), nodes.filter(lambda n: n.name == "b"))
        )
        client.prepare_experiment(experiment, "crash")
        client.wait("crash", until="ready")
        client.start_execution("crash")
        client.wait_flag("crash", "a-started", FlagValues(int_value=1), timeout=30)
        client.wait_flag("crash", "b-started", FlagValues(int_value=1), timeout=30)
        # The flag is set inside the step; its result reaches the controller just after.
        wait_for_steps(client, "crash", "a", ["announce"], timeout=30)

        cluster.kill_agent("a", signal.SIGKILL)
        # Silent past the heartbeat timeout: suspect, and its work is still kept.
        wait_until(lambda: node_state(client, "a") == "suspect", 10, "node a to be suspect")
        assert deployment_state(client, "crash", "a") == "running"
        env = cli_env(cluster)
        assert table_row(shoal("nodes", env=env), "a")[1] == "suspect"
        # a's executor notices its agent is gone and ends itself; b goes on
        client.set_flag_values("crash", "go", FlagValues("go", 1))
        info = client.wait("crash", timeout=30)

        # One deployment lost: the experiment did not get its work done.
        assert info.status is ExperimentStatus.FAILED
        error = client.raw_status("crash")["error"]
        assert "1 of 2 deployments failed or were lost: a lost" in error
        assert node_state(client, "a") == "offline"
        # The same status on the command line.
        row = table_row(shoal("experiments", env=env), "crash")
        assert row[1:3] == ["pipelines", "FAILED"], row
        assert "2 (1 lost) deployments" in row[3] and row[4] == "1", row
        shown = shoal("status", "crash", env=env)
        assert "crash (pipelines): FAILED" in shown, shown
        assert "1 of 2 deployments failed or were lost" in shown, shown
        assert table_row(shoal("nodes", env=env), "a") == []
        assert table_row(shoal("nodes", "--all", env=env), "a")[1] == "offline"
        by_node = {r.node.name: r for r in info.execution_result}
        assert by_node["a"].state == "lost"
        assert "node 'a' was lost" in by_node["a"].error
        assert by_node["b"].state == "finished"
        assert by_node["b"].result.unwrap()["read"] == [Success(FlagValues("go", 1))]
        assert "a" not in client.get_nodes().names()
        # the step a finished before it died is kept
        assert step_names(client, "crash", "a") == ["announce"]


def cli_env(cluster: LocalCluster) -> dict[str, str]:
    return {
        "SHOAL_ENDPOINT": cluster.endpoint,
        "SHOAL_LOGIN": cluster.login,
        "SHOAL_PASSWORD": cluster.password,
        "COLUMNS": "250",
    }


def table_row(table: str, first: str) -> list[str]:
    """The cells of the row of a printed table whose first cell is ``first`` ([] if none)."""
    for line in table.splitlines():
        # A table printed to a terminal has │ between cells; piped, tabs.
        separator = "\t" if "\t" in line else "│"
        cells = [cell.strip() for cell in line.strip("│┃ ").split(separator)]
        if cells and cells[0] == first:
            return cells
    return []


def node_state(client, name: str) -> str:
    return next(n["state"] for n in client.raw_nodes(include_offline=True) if n["name"] == name)


def deployment_state(client, experiment: str, node: str) -> str:
    for deployment in client.raw_status(experiment)["deployments"]:
        if deployment["node"]["name"] == node:
            return deployment["state"]
    raise AssertionError(f"no deployment on {node}")


def step_names(client, experiment: str, node: str) -> list[str]:
    for deployment in client.raw_status(experiment)["deployments"]:
        if deployment["node"]["name"] == node:
            return [s["task_name"] for s in deployment["steps"]]
    raise AssertionError(f"no deployment on {node}")


def wait_for_steps(client, experiment: str, node: str, names: list[str], timeout: float) -> None:
    # Polling the status API: there is no push for step records.
    wait_until(
        lambda: step_names(client, experiment, node) == names,
        timeout,
        f"steps {names} of {node} to be recorded",
    )


@pytest.mark.timeout(120)
def test_controller_restart_mid_run(tmp_path) -> None:
    with LocalCluster(["a", "b"], workdir=tmp_path, heartbeat_timeout=5) as cluster:
        client = cluster.client()
        nodes = client.get_nodes()
        done = Pipeline().then(GetFlagTask("kept", name="read"))
        client.prepare_experiment(Experiment().map(done, nodes.take(1)), "before")
        client.set_flag_values("before", "kept", FlagValues("kept", 7))
        client.wait("before", until="ready")
        client.start_execution("before")
        assert client.wait("before").status is ExperimentStatus.FINISHED

        experiment = Experiment().map(barrier_pipeline("x"), nodes)
        client.prepare_experiment(experiment, "across-restart")
        client.wait("across-restart", until="ready")
        client.start_execution("across-restart")
        client.wait_flag("across-restart", "x-started", FlagValues(int_value=1), timeout=30)

        cluster.stop_controller(signal.SIGKILL)
        cluster.start_controller()
        client = cluster.client()
        client.wait_for_nodes(["a", "b"], timeout=30)  # agents came back by themselves

        # what finished before the restart is all there
        before = client.get_experiment_status("before")
        assert before.status is ExperimentStatus.FINISHED
        assert before.execution_result[0].result.unwrap()["read"] == [
            Success(FlagValues("kept", 7))
        ]
        assert client.get_flag_values("before", "kept") == FlagValues("kept", 7)
        assert client.get_flag_values("across-restart", "x-started") == FlagValues(None, 1)

        # and the run in progress carries on to the end
        client.set_flag_values("across-restart", "go", FlagValues("go", 1))
        info = client.wait("across-restart", timeout=60)
        assert info.status is ExperimentStatus.FINISHED, info
        for result in info.execution_result:
            assert result.state == "finished", result
            assert result.result.unwrap()["read"] == [Success(FlagValues("go", 1))]


class ReadFifo(Task):
    """Blocks until the test writes to the FIFO: the test's way to say go."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__(name)
        self.path = path

    def run(self) -> str:
        with open(self.path) as fifo:
            return fifo.read()


class WriteFifo(Task):
    def __init__(self, path: str, text: str, name: str) -> None:
        super().__init__(name)
        self.path, self.text = path, text

    def run(self) -> str:
        with open(self.path, "w") as fifo:
            fifo.write(self.text)
        return self.text


def read_fifo(path, timeout: float) -> str:
    """Open a FIFO for reading without blocking forever, then read what the writer sent."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"nothing written to {path} in {timeout} s")
            chunk = os.read(fd, 4096)
            if not chunk and data:
                return data.decode()
            data += chunk
    finally:
        os.close(fd)


def _open_writer(fifo: object) -> int | None:
    """The write end of ``fifo`` if a reader has it open, else None (never blocks)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # type: ignore[arg-type]
    except OSError:
        return None


@pytest.mark.timeout(120)
def test_results_finished_while_the_controller_was_down_are_reported(tmp_path) -> None:
    go, done = tmp_path / "go", tmp_path / "done"
    os.mkfifo(go)
    os.mkfifo(done)
    pipeline = (
        Pipeline()
        .then(SetFlagTask("started", FlagValues(int_value=1), name="announce"))
        .then(ReadFifo(str(go), name="wait-for-go"))
        .then(WriteFifo(str(done), "finished offline", name="finish"))
    )
    with LocalCluster(["a"], workdir=tmp_path / "cluster", heartbeat_timeout=5) as cluster:
        client = cluster.client()
        client.prepare_experiment(Experiment().map(pipeline, client.get_nodes()), "offline")
        client.wait("offline", until="ready")
        client.start_execution("offline")
        client.wait_flag("offline", "started", FlagValues(int_value=1), timeout=30)
        # The flag shows before the executor has its answer: the controller dies
        # only once the step after it runs (has opened its end of the fifo).
        writer = wait_until(lambda: _open_writer(go), timeout=30, what="the step reading")

        cluster.stop_controller(signal.SIGKILL)
        os.write(writer, b"go")
        os.close(writer)
        assert read_fifo(done, timeout=30) == "finished offline"  # the pipeline is done

        cluster.start_controller()
        client = cluster.client()
        info = client.wait("offline", timeout=60)
        assert info.status is ExperimentStatus.FINISHED
        steps = info.execution_result[0].result.unwrap()
        assert steps["wait-for-go"] == [Success("go")]
        assert steps["finish"] == [Success("finished offline")]


@pytest.mark.timeout(120)
def test_hung_agent_is_suspect_and_its_step_result_is_kept(tmp_path) -> None:
    """SIGSTOP for 30 s mid-step (longer than the heartbeat timeout, shorter than
    the lost timeout): the node is suspect meanwhile, and after SIGCONT the step
    goes on and its real result is stored."""
    go = tmp_path / "go"
    os.mkfifo(go)
    pipeline = (
        Pipeline()
        .then(SetFlagTask("started", FlagValues(int_value=1), name="announce"))
        .then(ReadFifo(str(go), name="wait-for-go"))
    )
    with LocalCluster(
        ["a"], workdir=tmp_path / "cluster", heartbeat_timeout=5, lost_timeout=60
    ) as cluster:
        client = cluster.client()
        client.prepare_experiment(Experiment().map(pipeline, client.get_nodes()), "hang")
        client.wait("hang", until="ready")
        client.start_execution("hang")
        client.wait_flag("hang", "started", FlagValues(int_value=1), timeout=30)

        agent = cluster.agents["a"]
        agent.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            wait_until(lambda: node_state(client, "a") == "suspect", 15, "node a to be suspect")
            assert "a" not in client.get_nodes().names()  # no new work for it meanwhile
            assert deployment_state(client, "hang", "a") == "running"
            # The fault under test is the hang itself: it lasts 30 s, as an
            # operator's SIGSTOP would, whatever the controller does meanwhile.
            time.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
            assert deployment_state(client, "hang", "a") == "running"
        finally:
            agent.send_signal(signal.SIGCONT)
        wait_until(lambda: node_state(client, "a") == "online", 15, "node a to be back")

        with open(go, "w") as fifo:  # the step has waited on its FIFO all along
            fifo.write("go")
        info = client.wait("hang", timeout=30)
        assert info.status is ExperimentStatus.FINISHED, info
        assert info.execution_result[0].state == "finished"
        assert info.execution_result[0].result.unwrap()["wait-for-go"] == [Success("go")]


class PreparesWhileItsAgentLives(Task):
    """Its requirement runs until the agent that started it is gone (then fails)."""

    requirements = ["while kill -0 $PPID 2>/dev/null; do sleep 0.2; done; exit 1"]

    def run(self) -> str:
        return "never reached"


@pytest.mark.timeout(120)
def test_no_experiment_stays_preparing_once_its_deployments_ended(tmp_path) -> None:
    """The node flaps and the controller restarts twice while a deployment prepares:
    the deployment ends lost and the experiment FAILED, and a store left by an
    older controller with a final deployment under a PREPARING experiment is
    settled at the next start."""
    preparing = Pipeline().then(PreparesWhileItsAgentLives(name="step"))
    with LocalCluster(
        ["a"], workdir=tmp_path, heartbeat_interval=0.2, heartbeat_timeout=1, lost_timeout=2
    ) as cluster:
        client = cluster.client()
        client.prepare_experiment(Experiment().map(preparing, ["a"]), "stuck")
        wait_until(lambda: deployment_state(client, "stuck", "a") == "preparing", 10, "the prepare")
        cluster.kill_agent("a", signal.SIGKILL)  # the node flaps away ...
        wait_until(lambda: node_state(client, "a") == "suspect", 10, "node a to be suspect")
        cluster.start_agent("a")  # ... comes back (and is sent the Prepare again) ...
        client.wait_for_nodes(["a"], timeout=30)
        cluster.kill_agent("a", signal.SIGKILL)  # ... and goes for good
        for _ in range(2):
            cluster.stop_controller(signal.SIGKILL)
            cluster.start_controller()
        client = cluster.client()
        info = client.wait("stuck", timeout=40)
        assert info.status is ExperimentStatus.FAILED, info
        assert deployment_state(client, "stuck", "a") == "lost"
        assert (
            "1 of 1 deployments failed or were lost: a lost" in client.raw_status("stuck")["error"]
        )

        # What an older controller could leave behind: the deployment final, the
        # experiment not. The next start settles it.
        cluster.stop_controller()
        with sqlite3.connect(tmp_path / "shoal.db") as db:
            db.execute("UPDATE experiments SET status = 'PREPARING', finished_at = NULL")
        cluster.start_controller()
        client = cluster.client()
        assert client.get_experiment_status("stuck").status is ExperimentStatus.FAILED
