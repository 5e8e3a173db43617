"""Trust between controller and nodes (issue 15, tests 1, 2 and 9): no agent secret
reaches user code, a node name belongs to the node that enrolled with it, and a
report is believed only from the node its work was placed on."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from processes import SHOAL, Controller, add_user, free_port, shoal, start_agent, stop_all
from shoal import Experiment, LocalCluster, Pipeline, RemoteClient
from shoal.library.basic import ShellCommand
from shoal.protocol import (
    PROTOCOL_VERSION,
    ControllerMessage,
    DeploymentReport,
    DeploymentState,
    FrameDecoder,
    FrameEncoder,
    Hello,
    StepResult,
    Welcome,
)
from waiting import wait_until

NODES = ["trust-a", "trust-b"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(NODES, workdir=tmp_path_factory.mktemp("trust")) as c:
        yield c


def credential_file(cluster: LocalCluster, name: str) -> Path:
    return cluster.workdir / "agents" / name / "node-credential"


def secrets_of(cluster: LocalCluster) -> list[str]:
    """What must never show up in a task's output: the join token and every node credential."""
    return [cluster.agent_token] + [credential_file(cluster, n).read_text().strip() for n in NODES]


def assert_clean(output: str, cluster: LocalCluster, what: str) -> None:
    assert "PATH=" in output, f"{what} printed no environment: {output[:500]!r}"
    assert "SHOAL_AGENT_TOKEN" not in output, what
    for secret in secrets_of(cluster):
        assert secret not in output, f"{what} shows an agent secret"


def operator_env(cluster: LocalCluster) -> dict[str, str]:
    return {
        "SHOAL_ENDPOINT": cluster.endpoint,
        "SHOAL_LOGIN": cluster.login,
        "SHOAL_PASSWORD": cluster.password,
    }


def online(client: Any, name: str) -> bool:
    return any(n["name"] == name and n["online"] for n in client.raw_nodes(include_offline=True))


def run_agent(endpoint: str, name: str, workdir: Path, env: dict[str, str], timeout: float = 30):
    """`shoal agent` expected to be refused: it exits by itself."""
    return subprocess.run(
        [*SHOAL, "agent", "--controller", endpoint, "--name", name, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


# --- (a) no agent secret reaches user code -----------------------------------------------


@pytest.mark.timeout(90)
def test_pipeline_step_and_command_see_no_agent_secret(cluster: LocalCluster) -> None:
    client = cluster.client()
    pipeline = Pipeline().then(ShellCommand("env", name="env"))
    client.prepare_experiment(Experiment().map(pipeline, client.get_nodes().take(1)), "env-step")
    client.wait("env-step", until="ready", timeout=30)
    client.start_execution("env-step")
    result = client.wait("env-step", timeout=30).execution_result[0].result
    assert_clean(result.unwrap()["env"][0].unwrap(), cluster, "a pipeline step")

    lines: list[str] = []
    state = client.commands().run("trust-b", "env", handlers={"stdout": lines.append})
    assert state.done.wait(20) and state.code == 0
    assert_clean("\n".join(lines), cluster, "a runner command")


@pytest.mark.timeout(90)
def test_graph_tasks_see_no_agent_secret(cluster: LocalCluster) -> None:
    from shoal.graph import Client, remote, tasks

    @remote()
    def environment(ctx: Any) -> str:
        import os

        return "\n".join(f"{k}={v}" for k, v in os.environ.items())

    login = {"endpoint": cluster.endpoint, "login": cluster.login, "password": cluster.password}
    with Client(**login) as gc, gc.new_session() as session:
        python_task = environment()
        python_task.output.keep()
        execute = tasks.Execute("env", stdout=True)
        execute.outputs["stdout"].keep()
        session.submit()
        from_python = python_task.output.fetch().get_bytes().decode()
        from_execute = execute.outputs["stdout"].fetch().get_bytes().decode()
    assert_clean(from_python, cluster, "a graph @remote task")
    assert_clean(from_execute, cluster, "a graph Execute task")


NETWORK_CONFIG = """
from envnet.jobs import EnvJob
from shoal.dataflow import BaseNode, CSVSinkJob, PicklePipe

JOBS = [EnvJob(outputs=[PicklePipe(1)]), CSVSinkJob(path="n.csv", inputs=[PicklePipe(1)])]
NODES = [BaseNode("trust-a")]
"""

NETWORK_JOBS = """
import os
import time
from pathlib import Path

from shoal.dataflow import PythonJob


class EnvJob(PythonJob):
    def run(self):
        text = "\\n".join(f"{{k}}={{v}}" for k, v in os.environ.items())
        Path({out!r}).write_text(text)
        while True:
            yield 1
            time.sleep(0.05)
"""


@pytest.mark.timeout(120)
def test_dataflow_job_sees_no_agent_secret(cluster: LocalCluster, tmp_path: Path) -> None:
    from shoal.dataflow import Coordinator, load_network

    out = tmp_path / "job-env.txt"
    network_dir = tmp_path / "envnet"
    network_dir.mkdir()
    (network_dir / "__init__.py").write_text("")
    (network_dir / "config.py").write_text(NETWORK_CONFIG)
    (network_dir / "jobs.py").write_text(textwrap.dedent(NETWORK_JOBS.format(out=str(out))))
    network = load_network(network_dir)
    coordinator = Coordinator(
        network, cluster.client(), tmp_path / "output", loopback=True, echo=False
    )
    with coordinator:
        wait_until(out.exists, 60, "the dataflow job to write its environment")
    assert_clean(out.read_text(), cluster, "a dataflow job")


@pytest.mark.timeout(30)
def test_agent_command_line_holds_no_token(cluster: LocalCluster) -> None:
    for name in NODES:
        cmdline = Path(f"/proc/{cluster.agents[name].pid}/cmdline").read_bytes().decode()
        assert "--token-file" in cmdline
        for secret in secrets_of(cluster):
            assert secret not in cmdline


# --- (b) a node name belongs to the node that enrolled with it -------------------------


@pytest.mark.timeout(90)
def test_a_second_agent_cannot_take_an_enrolled_name(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.start_agent("victim")
    client = cluster.client()
    client.wait_for_nodes(["victim"], timeout=30)
    credential = credential_file(cluster, "victim")
    wait_until(credential.exists, 10, "the agent to store its credential")
    assert credential.stat().st_mode & 0o777 == 0o600
    join = {"SHOAL_AGENT_TOKEN": cluster.agent_token}

    # While the real node is online, and after it went away: refused, with the reason.
    for moment in ("online", "gone"):
        if moment == "gone":
            cluster.kill_agent("victim", signal.SIGKILL)
        done = run_agent(cluster.endpoint, "victim", tmp_path / f"intruder-{moment}", join)
        assert done.returncode == 2, done.stderr
        assert "node name 'victim' is enrolled with another credential" in done.stderr
        assert "shoal node forget victim" in done.stderr

    # A credential is good for its own name only.
    other = tmp_path / "stolen"
    other.mkdir()
    (other / "node-credential").write_bytes(credential.read_bytes())
    done = run_agent(cluster.endpoint, "someone-else", other, {})
    assert done.returncode == 2
    assert "belongs to node 'victim'" in done.stderr

    shoal("node", "forget", "victim", env=operator_env(cluster))
    newcomer = subprocess.Popen(
        [
            *SHOAL,
            "agent",
            "--controller",
            cluster.endpoint,
            "--name",
            "victim",
            "--workdir",
            str(tmp_path / "newcomer"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **join},
    )
    try:
        client.wait_for_nodes(["victim"], timeout=30)
        stored = tmp_path / "newcomer" / "node-credential"
        wait_until(stored.exists, 10, "the newcomer to store its credential")
        assert stored.stat().st_mode & 0o777 == 0o600
        # The old node's credential is void now, and the name is the newcomer's.
        done = run_agent(cluster.endpoint, "victim", credential.parent, join)
        assert done.returncode == 2
        assert "is enrolled with another credential" in done.stderr
    finally:
        stop_all([newcomer])


# --- (c) reports are believed only from the node the work was placed on -----------------


class FakeNode:
    """A raw WebSocket client speaking the agent protocol (as an attacker would)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.encoder = FrameEncoder()
        self.decoder: FrameDecoder[Any] = FrameDecoder(ControllerMessage)
        self.credential = ""

    def send(self, *messages: Any) -> None:
        self.ws.send(self.encoder.encode(list(messages)))

    def receive(self, kind: type) -> Any:
        while True:
            for message in self.decoder.decode(self.ws.recv(timeout=10)):
                if isinstance(message, kind):
                    return message


@contextmanager
def fake_node(endpoint: str, secret: str, hello: Hello) -> Iterator[FakeNode]:
    """Connected, said Hello and got Welcome (with a credential, if it enrolled now)."""
    url = endpoint.replace("http://", "ws://") + "/api/agents/ws"
    headers = {"Authorization": f"Bearer {secret}"}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        node = FakeNode(ws)
        node.send(hello)
        node.credential = node.receive(Welcome).credential
        yield node


class Boom:
    """Unpickling this runs a command: what a forged result would do to a client."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def hello(name: str, reports: list[DeploymentReport] | None = None) -> Hello:
    return Hello(
        name=name,
        version=PROTOCOL_VERSION,
        architecture="linux/amd64",
        cpus=1,
        deployments=reports or [],
    )


@pytest.mark.timeout(90)
def test_forged_reports_about_another_nodes_deployment_are_dropped(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    marker, go = tmp_path / "pwned", tmp_path / "go"
    evil = pickle.dumps(Boom(marker))
    client = cluster.client()
    wait_for_go = f"while [ ! -e {go} ]; do sleep 0.05; done; echo real-result"
    pipeline = Pipeline().then(ShellCommand(wait_for_go, name="real"))
    nodes = client.get_nodes().filter(lambda n: n.name == "trust-a")
    client.prepare_experiment(Experiment().map(pipeline, nodes), "victim-exp")
    client.wait("victim-exp", until="ready", timeout=30)
    client.start_execution("victim-exp")
    info = client.get_experiment_status("victim-exp")
    deployment = info.experiment.deployment_map[0].executor_id

    # An enrolled fake node (it had the join token) answers Start for trust-a's deployment.
    with fake_node(cluster.endpoint, cluster.agent_token, hello("fake-node")) as fake:
        credential = fake.credential
    assert credential
    forged_step = StepResult(
        deployment=deployment, index=0, task_name="real", ok=True, payload=evil, text="forged"
    )
    forged_report = DeploymentReport(
        id=deployment, state="finished", steps=[forged_step], result=evil, result_text="forged"
    )
    with fake_node(cluster.endpoint, credential, hello("fake-node", [forged_report])) as fake:
        fake.send(
            forged_step,
            DeploymentState(
                deployment=deployment, state="finished", result=evil, result_text="forged"
            ),
        )
        log = cluster.workdir / "logs" / "controller.log"
        wait_until(
            lambda: (
                log.read_text().count(f"about deployment {deployment} from node 'fake-node'") >= 3
            ),
            20,
            "the controller to drop the forged reports",
        )
    assert client.get_experiment_status("victim-exp").status.name == "RUNNING"

    go.touch()
    info = client.wait("victim-exp", timeout=30)
    assert info.status.name == "FINISHED"
    assert info.execution_result[0].result.unwrap()["real"][0].unwrap() == "real-result\n"
    steps = client.raw_status("victim-exp")["deployments"][0]["steps"]
    assert "forged" not in [s["text"] for s in steps]
    assert not marker.exists(), "the client unpickled what a fake node sent"


# --- (d) rotating the join token ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_token_rotation_keeps_enrolled_nodes_and_admits_new_ones_with_the_new_token(
    tmp_path: Path,
) -> None:
    with LocalCluster(["rot-a"], workdir=tmp_path / "cluster") as cluster:
        client = cluster.client()
        new_file = tmp_path / "new-join-token"
        shoal("token", "rotate", "--db", cluster.db_url, "--token-file", str(new_file))
        assert new_file.stat().st_mode & 0o777 == 0o600
        new_token = new_file.read_text().strip()
        assert new_token and new_token != cluster.agent_token

        # The enrolled node restarts and comes back with its own credential.
        cluster.kill_agent("rot-a")
        wait_until(lambda: not online(client, "rot-a"), 30, "rot-a to go offline")
        cluster.start_agent("rot-a")
        client.wait_for_nodes(["rot-a"], timeout=30)
        assert cluster.agents["rot-a"].poll() is None

        # A new node: the old token no longer admits it, the new one does.
        old = {"SHOAL_AGENT_TOKEN": cluster.agent_token}
        done = run_agent(cluster.endpoint, "rot-b", tmp_path / "rot-b-old", old)
        assert done.returncode == 2 and "wrong join token" in done.stderr
        newcomer = subprocess.Popen(
            [
                *SHOAL,
                "agent",
                "--controller",
                cluster.endpoint,
                "--name",
                "rot-b",
                "--token-file",
                str(new_file),
                "--workdir",
                str(tmp_path / "rot-b"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client.wait_for_nodes(["rot-b"], timeout=30)
        finally:
            stop_all([newcomer])


@pytest.mark.timeout(30)
def test_token_on_the_command_line_is_refused_with_a_hint() -> None:
    done = subprocess.run(
        [*SHOAL, "agent", "--controller", "http://127.0.0.1:9", "--token", "x"],
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert done.returncode == 2
    assert "--token-file" in done.stderr and "Traceback" not in done.stderr


# --- secrets at rest ----------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_join_token_and_credentials_are_stored_hashed(tmp_path: Path) -> None:
    """A plain join token left by an earlier version is replaced by its hash at start,
    and still admits agents; node credentials are stored as hashes only."""
    db_path = tmp_path / "controller.db"
    db = f"sqlite+aiosqlite:///{db_path}"
    add_user(db, "op", "op-pw")
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO settings (key, value) VALUES ('agent_token', 'legacy-token')")
    controller = Controller(db, free_port(), "", tmp_path / "controller.log").start()
    agents = []
    try:
        with sqlite3.connect(db_path) as conn:
            stored = dict(conn.execute("SELECT key, value FROM settings").fetchall())
        assert "agent_token" not in stored
        assert stored["agent_token_hash"].startswith("$argon2")
        agents.append(
            start_agent(controller.endpoint, "legacy-token", "old-node", tmp_path / "a.log")
        )
        with RemoteClient(controller.endpoint, "op", "op-pw") as client:
            client.wait_for_nodes(["old-node"], timeout=30)
        credential_path = tmp_path / "agent-old-node" / "node-credential"
        wait_until(credential_path.exists, 10, "the agent to store its credential")
        credential = credential_path.read_text().strip()
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute("SELECT name, credential_hash FROM node_credentials").fetchall()
        assert rows == [("old-node", hashlib.sha256(credential.encode()).hexdigest())]
        for path in tmp_path.glob("controller.db*"):  # the database, its WAL
            assert credential.encode() not in path.read_bytes()
    finally:
        stop_all(agents)
        controller.stop()


def test_enrolling_ahead_of_the_agent_needs_the_join_token(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """What `shoal deploy` does: enroll a name over REST with the join token, hand
    the credential to the host; the agent then joins with the credential alone."""
    import httpx

    url = f"{cluster.endpoint}/api/nodes/pre-enrolled/enroll"
    join_token = cluster.token_file.read_text().strip()
    login = {"username": cluster.login, "password": cluster.password}
    user_token = httpx.post(f"{cluster.endpoint}/api/token", data=login).json()["access_token"]
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {user_token}"},
    ):
        refused = httpx.post(url, headers=headers)
        assert refused.status_code == 401, refused.text
        assert "join token" in refused.json()["detail"]
    enrolled = httpx.post(url, headers={"Authorization": f"Bearer {join_token}"})
    assert enrolled.status_code == 201, enrolled.text
    credential = enrolled.json()["credential"]
    again = httpx.post(url, headers={"Authorization": f"Bearer {join_token}"})
    assert again.status_code == 409 and "shoal node forget" in again.json()["detail"]
    bad_name = httpx.post(
        f"{cluster.endpoint}/api/nodes/%01x/enroll",
        headers={"Authorization": f"Bearer {join_token}"},
    )
    assert bad_name.status_code == 422

    from shoal.private import write_private

    workdir = tmp_path / "agent"
    write_private(workdir / "node-credential", credential + "\n")
    agent = subprocess.Popen(
        [*SHOAL, "agent", "--controller", cluster.endpoint,
         "--name", "pre-enrolled", "--workdir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with cluster.client() as client:
            client.wait_for_nodes(["pre-enrolled"], timeout=30)
    finally:
        stop_all([agent])
        with cluster.client() as client:
            client.forget_node("pre-enrolled")
