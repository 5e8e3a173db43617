"""The runner front-end cancelled: Ctrl-C on `shoal exp` and `shoal cancel`, while its
commands wait or stream output; the run's record says so."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_helpers import env_for
from shoal import LocalCluster
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["node01", "node02"]) as c:
        yield c


# An experiment that waits on a long command once it runs.
SLEEPING = (
    "    up = SubstrMatcher('up')\n"
    "    cmd = servers[0].run_cmd('echo up; sleep 300', stdout=up)\n"
    "    assert up.wait(20)\n"
    "    started()\n"
    "    cmd.wait()\n"
)
# One whose commands stream output without end (to a handler on the client)
# while it waits: Ctrl-C lands while the channels are busy.
STREAMING = (
    "    counts = {}\n"
    "    def counter(node):\n"
    "        def count(line):\n"
    "            counts[node] = counts.get(node, 0) + 1\n"
    "        return count\n"
    "    cmds = [s.run_cmd('echo up; yes; sleep 300', stdout=counter(s.id)) for s in servers]\n"
    "    while len(counts) < len(cmds) or min(counts.values()) < 100000:\n"
    "        assert not any(c.ended(0.05) for c in cmds), 'a streaming command ended'\n"
    "    started()\n"
    "    for cmd in cmds:\n"
    "        cmd.wait()\n"
)


@contextlib.contextmanager
def held_run(
    cluster: LocalCluster, tmp_path: Path, name: str, body: str = SLEEPING
) -> Iterator[subprocess.Popen]:
    """`shoal exp` running an experiment (``body``, on node01 and node02) that says
    it started (``started()``, through a FIFO), then waits on long commands: a run
    to interrupt or cancel. Killed at the end if it is still running."""
    fifo = tmp_path / f"{name}-started"
    os.mkfifo(fifo)
    (tmp_path / f"{name}.py").write_text(
        "from shoal.runner import *\n"
        "servers = ServerList(Server('node01', '127.0.0.1'), Server('node02', '127.0.0.1'))\n"
        "def started():\n"
        f"    with open({str(fifo)!r}, 'w') as f:\n"
        "        f.write('started')\n"
        "@reg_exp(servers=servers)\n"
        f"def {name}(servers):\n" + body
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "shoal", "exp", "--no-progress", f"{name}.py"],
        cwd=tmp_path,
        env=env_for(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with open(fifo) as started:  # blocks until the command runs
            assert started.read() == "started"
        yield runner
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def sleep_record(cluster: LocalCluster, name: str) -> dict | None:
    with cluster.client() as client:
        status = client.raw_status(name)
    done = [c for c in status["commands"] if "sleep 300" in c["cmd"] and c["finished_at"]]
    return done[0] if done else None


def interrupt(cluster: LocalCluster, tmp_path: Path, name: str, body: str = SLEEPING) -> dict:
    """Ctrl-C a held run ``name``: it ends as an interrupted run does (exit 130, a
    message and no traceback) and is recorded CANCELLED; its record is returned."""
    with held_run(cluster, tmp_path, name, body) as runner:
        runner.send_signal(signal.SIGINT)
        _out, err = runner.communicate(timeout=30)
    assert runner.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with cluster.client() as client:
        status = client.raw_status(name)
    assert status["status"] == "CANCELLED", status
    return status


@pytest.mark.timeout(90)
def test_ctrl_c_records_the_run_as_cancelled(cluster, tmp_path) -> None:
    status = interrupt(cluster, tmp_path, "interrupted")
    assert "interrupted" in status["error"]
    killed = wait_until(lambda: sleep_record(cluster, "interrupted"), 20, "the command record")
    assert killed["return_code"] != 0  # killed, not left running


def ended_records(cluster: LocalCluster, name: str, count: int) -> list[dict] | None:
    """The records of run ``name``'s commands once all ``count`` have ended."""
    with cluster.client() as client:
        commands = client.raw_status(name)["commands"]
    ended = [c for c in commands if c["finished_at"]]
    return ended if len(commands) == count == len(ended) else None


@pytest.mark.timeout(90)
def test_ctrl_c_while_commands_stream_output(cluster, tmp_path) -> None:
    # SIGINT under load: the client's channel readers, its channel loop and the
    # agents are all busy moving output when the main thread is interrupted.
    interrupt(cluster, tmp_path, "streaming", STREAMING)
    ended = wait_until(lambda: ended_records(cluster, "streaming", 2), 20, "the command records")
    assert all(c["return_code"] != 0 for c in ended), ended  # killed, not left running


@pytest.mark.timeout(90)
def test_shoal_cancel_cancels_a_run(cluster, tmp_path) -> None:
    with held_run(cluster, tmp_path, "cancelme") as runner:
        cancelled = subprocess.run(
            [sys.executable, "-m", "shoal", "cancel", "cancelme"],
            env=env_for(cluster),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled run cancelme" in cancelled.stdout
        # Its command is killed, so the experiment function returns and the runner ends.
        out, err = runner.communicate(timeout=30)
    assert runner.returncode == 1, err
    assert "1 cancelled" in out and "cancelled: cancelme" in out
    with cluster.client() as client:
        status = client.raw_status("cancelme")
    assert status["status"] == "CANCELLED", status  # the runner's own report did not undo it
    killed = wait_until(lambda: sleep_record(cluster, "cancelme"), 20, "the command record")
    assert killed["return_code"] != 0
    again = subprocess.run(
        [sys.executable, "-m", "shoal", "cancel", "cancelme"],
        env=env_for(cluster),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "cancelled run cancelme" in again.stdout
