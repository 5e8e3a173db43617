"""`shoal up` and the operator commands, as a person would use them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from processes import read_until, shoal


@pytest.mark.timeout(120)
def test_shoal_up_serves_until_ctrl_c(tmp_path) -> None:
    env = {**os.environ, "COLUMNS": "250"}
    up = subprocess.Popen(
        [sys.executable, "-m", "shoal", "up", "--node", "lab-1", "--node", "lab-2", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        banner = read_until(up.stdout, "Press Ctrl-C to stop.", 60)
        assert "shoal is up" in banner and "login: shoal" in banner
        assert (tmp_path / ".shoal" / "up.env").is_file()
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 3  # controller and two agents

        # clients in this folder find the running shoal by themselves
        nodes = subprocess.run(
            [sys.executable, "-m", "shoal", "nodes"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert nodes.returncode == 0, nodes.stderr
        assert "lab-1" in nodes.stdout and "lab-2" in nodes.stdout
        script = (
            "from shoal import RemoteClient\nprint(sorted(RemoteClient().get_nodes().names()))\n"
        )
        listed = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert listed.stdout.strip() == "['lab-1', 'lab-2']", listed.stderr

        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=30)[0]
        assert up.returncode == 0, rest
        assert "stopped." in rest
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {alive}"
        assert not (tmp_path / ".shoal" / "up.env").exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_operator_commands_explain_missing_controller(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "nodes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "no controller endpoint" in done.stderr and "shoal up" in done.stderr


def test_help_lists_every_command() -> None:
    out = shoal("--help")
    for command in (
        "up",
        "controller",
        "agent",
        "nodes",
        "experiments",
        "status",
        "cancel",
        "flags",
        "user",
    ):
        assert command in out


@pytest.mark.timeout(60)
def test_status_and_cancel_on_the_command_line(seed_cluster, client) -> None:
    from shoal import Experiment, FlagValues, Pipeline
    from shoal.library.flags import WaitForExactFlagResultTask

    env = {
        "SHOAL_ENDPOINT": seed_cluster.endpoint,
        "SHOAL_LOGIN": seed_cluster.login,
        "SHOAL_PASSWORD": seed_cluster.password,
        "COLUMNS": "250",
    }
    pipeline = Pipeline().then(WaitForExactFlagResultTask("go", FlagValues(int_value=1)))
    client.prepare_experiment(Experiment().map(pipeline, client.get_nodes().take(2)), "cli-run")
    client.wait("cli-run", until="ready")
    client.start_execution("cli-run")
    assert "RUNNING" in shoal("status", "cli-run", env=env)
    assert "cli-run" in shoal("experiments", env=env)
    assert "cancelled cli-run" in shoal("cancel", "cli-run", env=env)
    assert client.wait("cli-run", timeout=30).status.name == "CANCELLED"
    missing = subprocess.run(
        [sys.executable, "-m", "shoal", "status", "nope"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert missing.returncode == 1 and "not found" in missing.stderr


@pytest.mark.timeout(60)
def test_busy_port_is_a_clear_error(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args in (["up", "--nodes", "1", "--port", port], ["controller", "--port", port]):
            done = subprocess.run(
                [sys.executable, "-m", "shoal", *args],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=50,
            )
            assert done.returncode == 1, done.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
            assert "Traceback" not in done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "command",
    [
        ["controller", "--port", "0"],
        ["user", "list"],
        ["token", "rotate", "--token-file", "join-token"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_database_that_cannot_be_reached_is_a_clear_error(tmp_path, command) -> None:
    unreachable = "postgresql+asyncpg://shoal:pw@127.0.0.1:1/shoal"  # nothing listens on port 1
    done = subprocess.run(
        [sys.executable, "-m", "shoal", *command, "--db", unreachable],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr
    assert "Traceback" not in done.stderr
