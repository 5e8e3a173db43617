"""Tokens live only as long as they should (issue 15, "Tokens live forever").

A real controller and agent: an executor's token is stolen the way a task on a
shared node could read it (the task itself hands it over, through a flag), then
tried on every path after its deployment ended or its experiment was cancelled.
A user's token is tried after a password change (made with the CLI on the
running controller's database), after logout, after removal of the user and
after it expired.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from leak import RELEASE, steal_executor_token
from processes import Controller, add_user, free_port, read_until
from relayed import relayed_grant
from shoal import (
    Experiment,
    FlagValues,
    LocalCluster,
    Pipeline,
    RemoteClient,
)
from shoal.channel import Channel, ChannelError
from shoal.client.commands import CommandChannel
from shoal.library.flags import WaitForExactFlagResultTask
from waiting import wait_until

REVOKED_WITHIN = 1.0  # seconds: what the issue allows for a revocation to reach every path


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["trust-1"]) as c:
        add_user(c.db_url, "alice", "alice-pw")
        add_user(c.db_url, "bob", "bob-pw")
        yield c


def _steal(client: RemoteClient, name: str) -> tuple[str, str]:
    """The token of a running experiment's task, and the experiment's id."""
    return steal_executor_token(client, name), client.raw_status(name)["id"]


def _executor_paths(endpoint: str, token: str, experiment_id: str) -> dict[str, int]:
    """The status of the executor token on the flag routes, shoal's and netUnicorn's."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=endpoint, timeout=10) as http:
        return {
            "flags": http.get("/api/executor/flags/stolen", headers=headers).status_code,
            "netunicorn": http.get(
                f"/netunicorn/gateway/{token}/api/v1/experiment/{experiment_id}/flag/stolen"
            ).status_code,
        }


def _channel_refused(endpoint: str, token: str) -> bool:
    try:
        Channel.connect(endpoint, token, "trust-1", "probe.echo", timeout=5).close()
    except ChannelError:
        return True
    return False


@pytest.mark.timeout(90)
def test_a_stolen_executor_token_dies_with_its_deployment(cluster: LocalCluster) -> None:
    alice = cluster.client("alice", "alice-pw")
    token, experiment_id = _steal(alice, "ends")
    assert _executor_paths(cluster.endpoint, token, experiment_id) == {
        "flags": 200,
        "netunicorn": 200,
    }
    # Through the relay (a grant without its direct address): the controller
    # holds it open, and closes it with the token.
    relayed = relayed_grant(cluster.endpoint, token, "trust-1", "probe.echo")
    held = Channel.open(relayed, cluster.endpoint, token)
    alice.set_flag_values("ends", RELEASE, FlagValues("go", 1))
    assert alice.wait("ends", timeout=30).status.name == "FINISHED"
    # Revoked in the transaction that stored the end: at once, not eventually.
    assert _executor_paths(cluster.endpoint, token, experiment_id) == {
        "flags": 401,
        "netunicorn": 401,
    }
    assert _channel_refused(cluster.endpoint, token)
    with pytest.raises(ChannelError):
        held.recv(timeout=10)  # the channel opened with it was closed
    held.close()


@pytest.mark.timeout(90)
def test_a_stolen_executor_token_dies_when_its_experiment_is_cancelled(
    cluster: LocalCluster,
) -> None:
    alice = cluster.client("alice", "alice-pw")
    token, experiment_id = _steal(alice, "cancelled")
    assert _executor_paths(cluster.endpoint, token, experiment_id)["flags"] == 200
    alice.cancel_experiment("cancelled")
    assert _executor_paths(cluster.endpoint, token, experiment_id) == {
        "flags": 401,
        "netunicorn": 401,
    }
    assert _channel_refused(cluster.endpoint, token)


@pytest.mark.timeout(90)
def test_executor_tokens_open_channels_as_their_own_deployment_only(
    cluster: LocalCluster,
) -> None:
    """The grant an executor's token gets names its deployment: the endpoint knows
    who opened it (tests/test_channels.py: a grant does not open with another
    opener's token)."""
    alice = cluster.client("alice", "alice-pw")
    token, _ = _steal(alice, "chan-exp")
    try:
        with Channel.connect(cluster.endpoint, token, "trust-1", "probe.echo") as channel:
            channel.send(b"mine")
            assert channel.recv(timeout=10) == b"mine"
        grant = relayed_grant(cluster.endpoint, token, "trust-1", "probe.echo")
        assert grant.opener.startswith("user:alice/deployment:"), grant.opener
    finally:
        alice.cancel_experiment("chan-exp")


def _login(endpoint: str, login: str, password: str) -> str:
    reply = httpx.post(f"{endpoint}/api/token", json={"login": login, "password": password})
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def _rest(endpoint: str, token: str) -> int:
    return httpx.get(
        f"{endpoint}/api/health", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def _netunicorn(endpoint: str, token: str) -> int:
    return httpx.get(
        f"{endpoint}/netunicorn/api/v1/verify_token",
        headers={"Authorization": f"Bearer {token}"},
    ).status_code


def _command_channel(endpoint: str, token: str, node: str) -> int:
    """The status of asking for a channel to run commands on ``node``."""
    return httpx.post(
        f"{endpoint}/api/channels",
        json={"node": node, "endpoint": "commands"},
        headers={"Authorization": f"Bearer {token}"},
    ).status_code


def _ws(endpoint: str, token: str, path: str) -> ClientConnection:
    return connect(
        endpoint.replace("http://", "ws://") + path,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    )


def _ws_refused(endpoint: str, token: str, path: str) -> bool:
    try:
        with _ws(endpoint, token, path):
            pass
    except InvalidStatus:
        return True
    return False


def _closed(ws: ClientConnection) -> bool:
    try:
        ws.recv(timeout=REVOKED_WITHIN + 1)
    except ConnectionClosed as exc:
        return exc.rcvd is not None and exc.rcvd.code == 4401
    except TimeoutError:
        return False
    return False


def _all_refused(endpoint: str, token: str) -> bool:
    return (
        _rest(endpoint, token) == 401
        and _netunicorn(endpoint, token) == 401
        and _command_channel(endpoint, token, "trust-1") == 401
        and _ws_refused(endpoint, token, "/api/graph/ws")
    )


@pytest.mark.timeout(60)
def test_a_password_change_on_the_command_line_revokes_old_tokens(
    cluster: LocalCluster,
) -> None:
    add_user(cluster.db_url, "carol", "first-pw")
    old = _login(cluster.endpoint, "carol", "first-pw")
    assert _rest(cluster.endpoint, old) == 200  # now in the controller's cache
    assert _netunicorn(cluster.endpoint, old) == 200
    commands = CommandChannel(cluster.endpoint, old)
    sleeper = commands.run("trust-1", "sleep 300")
    with _ws(cluster.endpoint, old, "/api/graph/ws") as graph:
        assert sleeper.started.wait(20) and sleeper.error is None
        add_user(cluster.db_url, "carol", "second-pw")  # another process, straight to the db
        wait_until(
            lambda: _rest(cluster.endpoint, old) == 401,
            REVOKED_WITHIN,
            "the old token to be refused",
        )
        assert _all_refused(cluster.endpoint, old)
        assert _closed(graph)
        # A command channel opened with the old token is closed, its command ended.
        assert sleeper.done.wait(REVOKED_WITHIN + 1), "the command outlived its token"
        assert sleeper.code is None and "revoked" in str(sleeper.error), sleeper.error
    commands.close()
    assert _rest(cluster.endpoint, _login(cluster.endpoint, "carol", "second-pw")) == 200


@pytest.mark.timeout(60)
def test_logout_revokes_the_calling_token_only(cluster: LocalCluster) -> None:
    one = _login(cluster.endpoint, "alice", "alice-pw")
    two = _login(cluster.endpoint, "alice", "alice-pw")
    one_commands, two_commands = (
        CommandChannel(cluster.endpoint, one),
        CommandChannel(cluster.endpoint, two),
    )
    mine = one_commands.run("trust-1", "sleep 300")
    theirs = two_commands.run("trust-1", "sleep 300")
    assert mine.started.wait(20) and theirs.started.wait(20)
    with _ws(cluster.endpoint, one, "/api/graph/ws") as graph:
        reply = httpx.post(
            f"{cluster.endpoint}/api/logout", headers={"Authorization": f"Bearer {one}"}
        )
        assert reply.status_code == 200, reply.text
        assert _all_refused(cluster.endpoint, one)
        assert _closed(graph)
        # The command channel of the logged-out token is closed; the other one's is not.
        assert mine.done.wait(REVOKED_WITHIN + 1), "the command outlived its token"
        assert mine.code is None and "revoked" in str(mine.error), mine.error
        assert not theirs.done.is_set(), theirs.error
    for commands in (one_commands, two_commands):
        commands.close()
    assert _rest(cluster.endpoint, two) == 200


@pytest.mark.timeout(60)
def test_users_are_listed_and_removed(cluster: LocalCluster) -> None:
    add_user(cluster.db_url, "dave", "dave-pw")
    token = _login(cluster.endpoint, "dave", "dave-pw")
    assert _rest(cluster.endpoint, token) == 200
    listed = _cli("user", "list", "--db", cluster.db_url)
    assert listed.returncode == 0 and "dave" in listed.stdout and "alice" in listed.stdout
    dave = cluster.client("dave", "dave-pw")
    pipeline = Pipeline().then(WaitForExactFlagResultTask("go", FlagValues("go", 1)))
    dave.prepare_experiment(Experiment().map(pipeline, dave.get_nodes().take(1)), "busy")
    busy = _cli("user", "remove", "dave", "--yes", "--db", cluster.db_url)
    assert busy.returncode != 0 and "unfinished experiments (busy)" in busy.stderr
    dave.cancel_experiment("busy")
    removed = _cli("user", "remove", "dave", "--yes", "--db", cluster.db_url)
    assert removed.returncode == 0, removed.stderr
    wait_until(
        lambda: _rest(cluster.endpoint, token) == 401, REVOKED_WITHIN, "dave's token to stop"
    )
    assert "dave" not in _cli("user", "list", "--db", cluster.db_url).stdout
    unknown = _cli("user", "remove", "nobody", "--yes", "--db", cluster.db_url)
    assert unknown.returncode != 0 and "no user 'nobody'" in unknown.stderr


def _cli(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.timeout(60)
def test_passwords_never_go_on_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shoal.db'}"
    refused = _cli("user", "add", "erin", "--password", "pw", "--db", db)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    assert "pw" not in _cli("user", "list", "--db", db).stdout.replace("password", "")
    piped = _cli("user", "add", "erin", "--password-stdin", "--db", db, stdin="s3cret\n")
    assert piped.returncode == 0, piped.stderr
    empty = _cli("user", "add", "frank", "--password-stdin", "--db", db, stdin="\n")
    assert empty.returncode != 0 and "may not be empty" in empty.stderr
    # Without a terminal the prompt reads the password and its confirmation from stdin.
    prompted = _cli("user", "add", "gina", "--db", db, stdin="pw-1\npw-1\n")
    assert prompted.returncode == 0, prompted.stderr
    mismatch = _cli("user", "add", "hank", "--db", db, stdin="pw-1\npw-2\n")
    assert mismatch.returncode != 0
    listed = _cli("user", "list", "--db", db).stdout
    assert "erin" in listed and "gina" in listed and "hank" not in listed


@pytest.mark.timeout(60)
def test_user_tokens_expire(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'shoal.db'}"
    add_user(db, "ivy", "ivy-pw")
    controller = Controller(
        db, free_port(), "join", tmp_path / "controller.log", "--token-ttl", "2s"
    )
    controller.start()
    try:
        token = _login(controller.endpoint, "ivy", "ivy-pw")
        assert _rest(controller.endpoint, token) == 200
        wait_until(lambda: _rest(controller.endpoint, token) == 401, 10, "the token to expire")
        assert _netunicorn(controller.endpoint, token) == 401
    finally:
        controller.stop()


@pytest.mark.timeout(90)
def test_secrets_at_rest_are_private(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "shoal", "up", "--nodes", "1", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert up.stdout is not None
        read_until(up.stdout, "Press Ctrl-C to stop.", 60)
        shoal_dir = tmp_path / ".shoal"
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in (shoal_dir, shoal_dir / "shoal.db", shoal_dir / "up.env")
        }
        assert modes == {".shoal": 0o700, "shoal.db": 0o600, "up.env": 0o600}
        for extra in shoal_dir.glob("shoal.db-*"):  # SQLite's -wal and -shm
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600, extra
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
