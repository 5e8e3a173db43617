"""Runner commands over channels: the same behaviour straight to a node and
through the controller's relay, a node dying mid-command, stdin closed with
data in flight, and who may open a command channel.

``direct-1`` serves channels on its own listener; ``relay-1`` runs
``--no-data-server`` (a node the client cannot reach), so its commands go
through the controller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from processes import add_user, start_agent
from runner_helpers import run_inline
from shoal import LocalCluster
from shoal.runner import CommandError, File, Server, ServerList, SubstrMatcher
from shoal.runner.context import current

NODES = {"direct": "direct-1", "relay": "relay-1"}
RELAY_ONLY = ("--no-data-server",)


def with_relay_agent(cluster: LocalCluster, logs: Path) -> None:
    """Add ``relay-1`` (``--no-data-server``) to ``cluster``; stopped with it."""
    relay = start_agent(
        cluster.endpoint, cluster.agent_token, NODES["relay"], logs / "relay.log", *RELAY_ONLY
    )
    cluster.agents[NODES["relay"]] = relay
    cluster.client().wait_for_nodes([NODES["relay"]], 30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster([NODES["direct"]]) as c:
        with_relay_agent(c, tmp_path_factory.mktemp("runner-channel-agents"))
        yield c


@pytest.fixture(params=sorted(NODES))
def path(request: pytest.FixtureRequest) -> str:
    return request.param


def servers_on(path: str) -> ServerList:
    return ServerList(Server(NODES[path], "127.0.0.1"))


@pytest.mark.timeout(90)
def test_the_runner_behaves_the_same_on_both_paths(
    cluster: LocalCluster, path: str, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    def exp(servers: ServerList) -> None:
        s = servers[0]
        lines: list[str] = []
        assert s.run_cmd("printf 'one\\ntwo\\nthree'", stdout=lines.append).wait() == 0
        seen["lines"] = lines
        errors: list[str] = []
        assert s.run_cmd("echo oops >&2; exit 3", stderr=errors.append).wait() == 3
        seen["stderr"] = errors
        echoed: list[str] = []
        cat = s.run_cmd("cat", stdout=echoed.append)
        cat.stdin("typed\n")
        cat.stdin("", close=True)
        assert cat.wait() == 0
        seen["echoed"] = echoed
        ready = SubstrMatcher("waiting")
        sleeper = s.run_cmd("echo waiting; sleep 300", stdout=ready)
        assert ready.wait(20)
        sleeper.kill()
        seen["killed"] = sleeper.wait()
        big = File(tmp_path / "big.txt")
        assert s.run_cmd("seq 1 200000", stdout=big).wait() == 0
        big.close()
        source = tmp_path / "upload.bin"
        source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # more than one upload part
        s.send_file(source, str(tmp_path / "uploaded.bin"))
        seen["paths"] = set(current().channel.paths().values())

    [outcome] = run_inline(cluster, servers_on(path), exp, raise_on_rc=False)
    assert outcome.status == "finished", outcome.error
    assert seen["lines"] == ["one\n", "two\n", "three\n"]
    assert seen["stderr"] == ["oops\n"]
    assert seen["echoed"] == ["typed\n"]
    assert seen["killed"] not in (0, None)
    expected = "".join(f"{i}\n" for i in range(1, 200001))
    assert (tmp_path / "big.txt").read_text() == expected
    assert (tmp_path / "uploaded.bin").read_bytes() == (tmp_path / "upload.bin").read_bytes()
    assert seen["paths"] == {path}
    with cluster.client() as client:
        records = client.raw_status("exp")["commands"]
    by_cmd = {r["cmd"]: r for r in records}
    assert by_cmd["echo oops >&2; exit 3"]["return_code"] == 3
    assert by_cmd["echo oops >&2; exit 3"]["stderr"] == "oops\n"
    assert by_cmd["seq 1 200000"]["truncated"] is True  # the record keeps 256 KiB
    assert len(by_cmd["seq 1 200000"]["stdout"]) == 256 * 1024


@pytest.mark.timeout(90)
def test_stdin_closed_with_data_in_flight_delivers_it_all(cluster: LocalCluster, path: str) -> None:
    counted: list[str] = []
    size = 0

    def exp(servers: ServerList) -> None:
        nonlocal size
        cmd = servers[0].run_cmd("wc -c", stdout=counted.append)
        part = b"x" * 65536 + b"\n"
        for _ in range(160):  # 10 MiB, more than a node queues for a process
            cmd.stdin(part)
            size += len(part)
        cmd.stdin(b"last line without a newline", close=True)
        size += len(b"last line without a newline")
        assert cmd.wait() == 0

    [outcome] = run_inline(cluster, servers_on(path), exp)
    assert outcome.status == "finished", outcome.error
    assert [line.strip() for line in counted] == [str(size)]


@pytest.mark.timeout(60)
def test_a_kill_right_behind_its_command_ends_it(cluster: LocalCluster, path: str) -> None:
    """A kill sent before the node said the command started still reaches it (the
    node starts a command as it arrives, so what follows it finds the process)."""
    codes: list[int | None] = []

    def exp(servers: ServerList) -> None:
        context = current()
        node = context.nodes[servers[0].id]
        state = context.channel.run(node, "sleep 30", experiment=context.experiment_id)
        context.channel.kill(state.id, grace=0.1)  # not waiting for its CommandStarted
        assert state.done.wait(20), "the kill did not reach the command"
        codes.append(state.code)

    [outcome] = run_inline(cluster, servers_on(path), exp)
    assert outcome.status == "finished", outcome.error
    assert codes == [-signal.SIGTERM]


@pytest.mark.timeout(90)
def test_a_node_killed_mid_command_fails_the_command_naming_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with LocalCluster([NODES["direct"]]) as lone:
        with_relay_agent(lone, tmp_path_factory.mktemp("dying-agents"))
        servers = ServerList(*(Server(node, "127.0.0.1") for node in NODES.values()))
        errors: dict[str, str] = {}
        pids: list[int] = []

        def exp(servers: ServerList) -> None:
            commands = []
            for s in servers:
                ready = SubstrMatcher("up")
                commands.append((s.id, s.run_cmd("echo up; sleep 300", stdout=ready)))
                assert ready.wait(20)
            for node, command in commands:
                pids.append(command.pid)
                lone.kill_agent(node, signal.SIGKILL)
                t0 = time.monotonic()
                with pytest.raises(CommandError) as failed:
                    command.wait()
                errors[node] = f"{failed.value} after {time.monotonic() - t0:.1f} s"

        try:
            [outcome] = run_inline(lone, servers, exp)
        finally:
            for pid in pids:  # the commands outlive their killed agents
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        assert outcome.status == "finished", outcome.error
        for node in NODES.values():
            assert f"node {node!r} was lost" in errors[node], errors
            assert float(errors[node].rsplit(" after ", 1)[1].split()[0]) < 5, errors


@pytest.mark.timeout(60)
def test_a_command_channel_needs_an_open_run_of_the_caller(cluster: LocalCluster) -> None:
    with cluster.client() as owner:
        run = owner.open_run("someone-elses")
        try:
            token = owner.token()

            def grant(endpoint: str, bearer: str = token) -> httpx.Response:
                return httpx.post(
                    f"{cluster.endpoint}/api/channels",
                    json={"node": NODES["direct"], "endpoint": endpoint},
                    headers={"Authorization": f"Bearer {bearer}"},
                )

            assert grant(f"commands/{run}").status_code == 200
            assert grant("commands").status_code == 200  # commands outside any run
            refused = grant("commands/no-such-run")
            assert refused.status_code == 403
            assert "no run 'no-such-run'" in refused.json()["detail"]
            add_user(cluster.db_url, "mallory", "mallory-pw")
            with cluster.client("mallory", "mallory-pw") as other:
                theirs = grant(f"commands/{run}", other.token())
            assert theirs.status_code == 403
            assert f"no run {run!r} of user 'mallory'" in theirs.json()["detail"]
        finally:
            owner.finish_run("someone-elses")
        after = grant(f"commands/{run}")
        assert after.status_code == 403, "a finished run takes no more commands"
