"""`shoal deploy` onto real SSH hosts: network namespaces with their own sshd (tests/netns.py).

The hosts have no route to any package index (an unreachable default route, and
pip's configuration of this machine hidden from their sessions), so every deploy
here installs from wheels the deploying machine fetched for them. One testbed of
three hosts is deployed once for the module; the tests that break a host repair it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flags_experiment import SERVER_VALUES, run_flags_experiment
from inventory_file import write_inventory
from netns import NetnsHost, NetnsUnavailable, ssh_hosts, unavailable_reason
from processes import Controller, add_user, free_port
from shoal import Experiment, ExperimentStatus, Pipeline, RemoteClient, Task
from shoal.client.settings import UP_ENV
from waiting import wait_until

pytestmark = pytest.mark.timeout(300)

# The seed's node names: its flags experiment picks nodes by them.
NODES = {
    "host-1": "snl-server-5",
    "host-2": "raspi-e4:5f:01:56:d8:cd",
    "host-3": "raspi-e4:5f:01:9b:85:9c",
}
PROPERTIES = {
    "host-1": {"role": "server", "room": "lab1"},
    "host-2": {"role": "raspi", "room": "lab2"},
    "host-3": {"role": "raspi", "room": "lab3"},
}


@dataclass
class Bed:
    hosts: list[NetnsHost]
    controller: Controller
    inventory: Path
    token_file: Path
    folder: Path  # where `shoal deploy` runs (it remembers the inventory in .shoal/)
    env: dict[str, str]

    def shoal(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shoal", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.folder,
            env=self.env,
        )

    def deploy(self, *extra: str, inventory: Path | None = None) -> subprocess.CompletedProcess:
        return self.shoal(
            "deploy",
            str(inventory or self.inventory),
            "--known-hosts",
            str(self.hosts[0].known_hosts),
            "--port",
            str(self.controller.port),
            "--token-file",
            str(self.token_file),
            *extra,
        )

    def client(self) -> RemoteClient:
        return RemoteClient(self.controller.endpoint, "test", "test")

    def node(self, host: NetnsHost) -> str:
        return NODES[host.name]

    def workdir(self, host: NetnsHost) -> Path:
        return Path(host.workdir)


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _online(bed: Bed, names: list[str]) -> bool:
    with bed.client() as client:
        return {n.name for n in client.get_nodes()} >= set(names)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if reason := unavailable_reason():
        pytest.skip(f"namespace SSH hosts: {reason}")
    tmp = tmp_path_factory.mktemp("deploy")
    try:
        hosts_cm = ssh_hosts(3, tmp / "hosts")
        hosts = hosts_cm.__enter__()
    except NetnsUnavailable as exc:
        pytest.skip(f"namespace SSH hosts: {exc}")
    try:
        for host in hosts:
            host.properties = PROPERTIES[host.name]
        inventory = write_inventory(
            tmp / "testbed.toml",
            hosts,
            per_host={
                "host-1": {"node": NODES["host-1"]},
                "host-2": {"node": NODES["host-2"]},
                # Through host-1, as a lab's Pis behind its gateway.
                "host-3": {"node": NODES["host-3"], "jump_host": f"root@{hosts[0].address}"},
            },
        )
        db_url = f"sqlite+aiosqlite:///{tmp / 'controller.db'}"
        add_user(db_url, "test", "test")
        token = "join-" + tmp.name
        controller = Controller(
            db_url, free_port(), token, tmp / "controller.log", "--host", "0.0.0.0"
        ).start()
        from shoal.private import write_private

        token_file = write_private(tmp / "join-token", token + "\n")
        folder = tmp / "work"
        folder.mkdir()
        # Wheels fetched for the hosts are kept here, not in the user's ~/.cache.
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "COLUMNS": "200"}
        bed = Bed(hosts, controller, inventory, token_file, folder, env)
        try:
            yield bed
        finally:
            bed.shoal("undeploy", str(inventory), "--known-hosts", str(hosts[0].known_hosts))
            controller.stop()
    finally:
        hosts_cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def deployed(testbed: Bed) -> Bed:
    done = testbed.deploy()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 installed" in done.stdout, done.stdout
    return testbed


def test_hosts_have_no_package_index(testbed: Bed) -> None:
    """What makes the deploys here offline ones: pip on a host reaches no index."""
    host = testbed.hosts[0]
    done = host.run(
        "PIP_CONFIG_FILE=/dev/null python3 -m pip download --no-deps -d /tmp/none "
        "--retries 0 --timeout 5 tenacity",
        timeout=60,
    )
    assert done.returncode != 0


def test_deploy_puts_agents_online_with_their_properties(deployed: Bed) -> None:
    with deployed.client() as client:
        client.wait_for_nodes(list(NODES.values()), timeout=60)
        nodes = {n.name: n for n in client.get_nodes()}
    for host in deployed.hosts:
        node = nodes[NODES[host.name]]
        assert {k: node.properties[k] for k in ("role", "room")} == PROPERTIES[host.name]
        assert node.architecture == "linux/amd64"
        # The node shows its own credential; the join token never reached the host.
        workdir = deployed.workdir(host)
        assert (workdir / "node-credential").stat().st_mode & 0o777 == 0o600
        token = deployed.token_file.read_text().strip()
        for path in workdir.rglob("*"):
            if path.is_file() and "venv" not in path.parts and "wheels" not in path.parts:
                assert token not in path.read_text(errors="replace"), path


def test_seed_flags_experiment_runs_on_deployed_hosts(deployed: Bed) -> None:
    with deployed.client() as client:
        values = run_flags_experiment(client, "deployed-flags", clients_count=2)
    # The seed's values, for its two clients (one server and two Pis here).
    assert values == [SERVER_VALUES[0], {**SERVER_VALUES[1], "int_value": 2}, *SERVER_VALUES[2:]]


def test_netunicorn_front_end_sees_the_deployed_pool(deployed: Bed) -> None:
    """A netUnicorn user's get_nodes(): the pool, filtered by properties, with architecture."""
    with deployed.client() as client:
        raspis = client.get_nodes().filter(lambda n: n.properties.get("role") == "raspi")
        assert sorted(n.name for n in raspis) == sorted(NODES[h] for h in ("host-2", "host-3"))
        assert {n.architecture for n in raspis} == {"linux/amd64"}


def test_deploy_again_changes_nothing(deployed: Bed) -> None:
    before = {h.name: _pid(deployed.workdir(h) / "agent.pid") for h in deployed.hosts}
    done = deployed.deploy()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 up to date" in done.stdout, done.stdout
    after = {h.name: _pid(deployed.workdir(h) / "agent.pid") for h in deployed.hosts}
    assert after == before and None not in after.values()


def test_deploy_upgrades_a_host_whose_settings_changed(deployed: Bed) -> None:
    host = deployed.hosts[1]
    old_agent = _pid(deployed.workdir(host) / "agent.pid")
    text = deployed.inventory.read_text()
    deployed.inventory.write_text(text.replace('"room" = "lab2"', '"room" = "lab9"'))
    done = deployed.deploy()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 up to date, 1 upgraded" in done.stdout, done.stdout
    assert _pid(deployed.workdir(host) / "agent.pid") not in (None, old_agent)
    with deployed.client() as client:
        (node,) = client.get_nodes().filter(lambda n: n.name == NODES[host.name])
        assert node.properties["room"] == "lab9"


def test_status_shows_each_host(deployed: Bed) -> None:
    done = deployed.shoal("deploy", "--status", "--known-hosts", str(deployed.hosts[0].known_hosts))
    assert done.returncode == 0, done.stderr
    for node in NODES.values():
        assert node in done.stdout
    assert done.stdout.count("connected") >= 3 and "not connected" not in done.stdout


def test_supervisor_restarts_a_killed_agent(deployed: Bed) -> None:
    host = deployed.hosts[1]
    pid_file = deployed.workdir(host) / "agent.pid"
    old = _pid(pid_file)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: _pid(pid_file) not in (None, old), timeout=30, what="a new agent")
    wait_until(
        lambda: _online(deployed, [NODES[host.name]]), timeout=60, what="the node back online"
    )


def test_deploy_repairs_a_host_whose_supervisor_is_gone(deployed: Bed) -> None:
    host = deployed.hosts[2]
    workdir = deployed.workdir(host)
    supervisor = _pid(workdir / "supervisor.pid")
    agent = _pid(workdir / "agent.pid")
    assert supervisor and agent
    os.kill(supervisor, signal.SIGKILL)
    os.kill(agent, signal.SIGKILL)
    wait_until(lambda: _pid(workdir / "agent.pid") is None, timeout=10, what="the agent gone")
    done = deployed.deploy()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 repaired" in done.stdout and "2 up to date" in done.stdout, done.stdout
    wait_until(lambda: _online(deployed, [NODES[host.name]]), timeout=60, what="node online")


def test_logs_prints_the_agents_log(deployed: Bed) -> None:
    node = NODES["host-1"]
    done = deployed.shoal(
        "logs", node, "-n", "50", "--known-hosts", str(deployed.hosts[0].known_hosts)
    )
    assert done.returncode == 0, done.stderr
    assert "supervisor: agent started" in done.stdout
    unknown = deployed.shoal("logs", "no-such-node")
    assert unknown.returncode == 1 and "no host for node 'no-such-node'" in unknown.stderr


class WaitForMarker(Task):
    """Finishes once a file appears (the hosts share this machine's filesystem)."""

    def __init__(self, marker: str, name: str) -> None:
        super().__init__(name=name)
        self.marker = marker

    def run(self) -> str:
        while not os.path.exists(self.marker):
            time.sleep(0.1)
        return "finished while cut off"


def test_agent_reconnects_after_its_network_is_cut(deployed: Bed, tmp_path: Path) -> None:
    host = deployed.hosts[1]
    node = NODES[host.name]
    marker = tmp_path / "go"
    with deployed.client() as client:
        nodes = client.get_nodes().filter(lambda n: n.name == node)
        pipeline = Pipeline().then(WaitForMarker(str(marker), name="wait"))
        client.prepare_experiment(Experiment().map(pipeline, nodes), "cut")
        assert client.wait("cut", until="ready", timeout=60).status is ExperimentStatus.READY
        client.start_execution("cut")
        wait_until(
            lambda: client.get_experiment_status("cut").status is ExperimentStatus.RUNNING,
            timeout=30,
            what="the step running",
        )
        cut_at = time.monotonic()
        host.link_down()
        try:
            wait_until(lambda: not _online(deployed, [node]), timeout=30, what="node not online")
            marker.touch()  # the step finishes while its node is cut off
            # The link stays down 20 s in all, as the scenario says.
            time.sleep(max(0.0, 20 - (time.monotonic() - cut_at)))
        finally:
            host.link_up()
        info = client.wait("cut", timeout=120)
        assert info.status is ExperimentStatus.FINISHED, info
        (result,) = info.execution_result
        assert [r.unwrap() for r in result.result.unwrap()["wait"]] == ["finished while cut off"]
        assert _online(deployed, [node])


def test_failing_hosts_fail_alone(make_hosts, tmp_path: Path, deployed: Bed) -> None:  # type: ignore[no-untyped-def]
    """A host that is down and one that refuses the key fail with their names; the
    third deploys, from wheels the user points at."""
    down, refusing, good = make_hosts(3)
    down.stop_sshd()
    wrong_key = tmp_path / "wrong-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True
    )
    inventory = write_inventory(
        tmp_path / "mixed.toml",
        [down, refusing, good],
        per_host={
            down.name: {"node": "down-host"},
            refusing.name: {"node": "refusing-host", "key_file": str(wrong_key)},
            good.name: {"node": "good-host"},
        },
    )
    wheels = next((Path(deployed.env["XDG_CACHE_HOME"]) / "shoal" / "wheels").glob("cp*"), None)
    assert wheels is not None, "the module's deploy fetched wheels for the hosts"
    done = deployed.shoal(
        "deploy",
        str(inventory),
        "--known-hosts",
        str(down.known_hosts),
        "--port",
        str(deployed.controller.port),
        "--token-file",
        str(deployed.token_file),
        "--wheels",
        str(wheels),
    )
    assert done.returncode == 1, done.stdout
    text = " ".join((done.stdout + done.stderr).split())
    assert "down-host: cannot connect to" in text and "connection refused" in text, text
    assert "refusing-host: root@" in text and "refused the key" in text, text
    assert "1 installed, 2 failed" in text, text
    assert "Traceback" not in text
    wait_until(lambda: _online(deployed, ["good-host"]), timeout=60, what="good-host online")
    undone = deployed.shoal(
        "undeploy", str(inventory), "--purge", "--known-hosts", str(down.known_hosts)
    )
    assert "1 removed" in undone.stdout, undone.stdout + undone.stderr
    assert not Path(good.workdir).exists()


def test_docs_page_runs_against_the_testbed(deployed: Bed, tmp_path: Path) -> None:
    from shoal.private import write_private
    from test_docs import DOCS, python_blocks

    script = tmp_path / "testbed_page.py"
    script.write_text(python_blocks(DOCS / "testbed.md"))
    write_private(tmp_path / ".shoal" / "join-token", deployed.token_file.read_text())
    bridge = deployed.hosts[0].bridge_address
    env = {
        **deployed.env,
        "SHOAL_INVENTORY": str(deployed.inventory),
        "SHOAL_KNOWN_HOSTS": str(deployed.hosts[0].known_hosts),
        "SHOAL_CONTROLLER": f"http://{bridge}:{deployed.controller.port}",
        "SHOAL_ENDPOINT": deployed.controller.endpoint,
        "SHOAL_LOGIN": "test",
        "SHOAL_PASSWORD": "test",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{NODES['host-1']}: up to date" in done.stdout, done.stdout
    assert "supervisor: agent started" in done.stdout
    assert "raspi-e4:5f:01:56:d8:cd linux/amd64" in done.stdout


def test_shoal_up_with_an_inventory_starts_and_stops_agents_on_the_hosts(
    make_hosts, tmp_path: Path, deployed: Bed
) -> None:  # type: ignore[no-untyped-def]
    (host,) = make_hosts(1)
    inventory = write_inventory(
        tmp_path / "up.toml", [host], per_host={host.name: {"node": "up-1"}}
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "shoal", "up", "--inventory", str(inventory),
         "--port", str(free_port()), "--known-hosts", str(host.known_hosts)],
        cwd=tmp_path, env=deployed.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        text = "".join(lines)
        assert "1 installed" in text or "installed" in text, text
        assert "nodes: up-1" in text, text
        from dotenv import dotenv_values

        found = dotenv_values(tmp_path / UP_ENV)  # what clients in that folder read
        login = (found["SHOAL_ENDPOINT"], found["SHOAL_LOGIN"], found["SHOAL_PASSWORD"])
        with RemoteClient(*login) as client:
            client.wait_for_nodes(["up-1"], timeout=60)
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=120)[0]
        assert up.returncode == 0 and "stopped." in rest, rest
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert [p for p in host.processes() if "sshd" not in _command(p)] == []


def test_undeploy_leaves_nothing_running(deployed: Bed) -> None:
    done = deployed.shoal(
        "undeploy", str(deployed.inventory), "--known-hosts", str(deployed.hosts[0].known_hosts)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 stopped" in done.stdout, done.stdout
    for host in deployed.hosts:
        others = [p for p in host.processes() if "sshd" not in _command(p)]
        assert others == [], [(p, _command(p)) for p in others]
    wait_until(
        lambda: not any(_online(deployed, [n]) for n in NODES.values()),
        timeout=30,
        what="the nodes offline",
    )


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""
