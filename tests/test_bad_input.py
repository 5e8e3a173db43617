"""Bad input (issue 15): oversize bodies, deeply nested JSON, the channel-accept race.

Each gets a 4xx that names the problem, costs the controller no memory in
proportion to what was sent, and changes nothing.
"""

from __future__ import annotations

import base64
import json
import select
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import cloudpickle
import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from processes import add_user
from shoal import (
    Experiment,
    FlagValues,
    LocalCluster,
    Pipeline,
    RemoteClient,
    RemoteClientException,
)
from shoal.library.flags import GetFlagTask

MB = 1024 * 1024
DEEP = 100_000
NESTED = b"[" * DEEP + b"]" * DEEP
AUTH_LIMIT = 64 * 1024  # ControllerConfig.max_body_auth
AUTH_ROUTES = {"/api/token", "/api/logout", "/netunicorn/api/v1/token"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["bad-1"]) as c:
        add_user(c.db_url, "alice", "alice-pw")
        add_user(c.db_url, "bob", "bob-pw")
        alice = c.client("alice", "alice-pw")
        pipeline = Pipeline().then(GetFlagTask("f"))
        alice.prepare_experiment(Experiment().map(pipeline, alice.get_nodes().take(1)), "keep")
        alice.set_flag_values("keep", "f", FlagValues("kept", 7))
        alice.wait("keep", until="ready", timeout=30)
        yield c


@pytest.fixture
def alice(cluster: LocalCluster) -> RemoteClient:
    client = cluster.client("alice", "alice-pw")
    client.healthcheck()
    return client


def _state(client: RemoteClient) -> tuple:
    """What bad input must not change."""
    listed = client._call("GET", "/api/experiments")
    experiments = {name: (e["status"], len(e["deployments"])) for name, e in listed.items()}
    return experiments, client.get_flag_values("keep", "f")


def _rss(cluster: LocalCluster) -> int:
    assert cluster.controller is not None
    return psutil.Process(cluster.controller.proc.pid).memory_info().rss


def _send_raw(
    endpoint: str,
    path: str,
    total: int,
    *,
    chunked: bool,
    token: str | None = None,
    method: str = "POST",
) -> tuple[int, str]:
    """Send ``total`` bytes (or as many as the controller takes before it answers);
    the status and body of its answer."""
    parts = urlsplit(endpoint)
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    piece = b"x" * (256 * 1024)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        try:
            while sent < total:
                readable, writable, _ = select.select([sock], [sock], [], 30)
                if readable:
                    break  # it answered: stop sending
                if writable:
                    data = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
                    sock.sendall(data)
                    sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        try:
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
    head_text, _, body = reply.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1]) if head_text else 0
    return status, body.decode(errors="replace")


@pytest.mark.timeout(120)
def test_oversize_bodies_get_413_without_being_buffered(
    cluster: LocalCluster, alice: RemoteClient
) -> None:
    before = _state(alice)
    token = alice.token()
    rss = _rss(cluster)
    cases = [
        # (path, bytes, chunked, token): a login with a 200 MB body, declared or streamed
        ("/api/token", 200 * MB, False, None),
        ("/api/token", 200 * MB, True, None),
        ("/netunicorn/api/v1/token", 200 * MB, True, None),
        # authenticated, on routes with larger limits
        ("/api/experiments/keep/flags/f", 200 * MB, True, token),
        ("/api/runs", 200 * MB, False, token),
        ("/api/experiments", 300 * MB, False, token),
    ]
    for path, size, chunked, bearer in cases:
        status, body = _send_raw(cluster.endpoint, path, size, chunked=chunked, token=bearer)
        assert status == 413, (path, chunked, status, body)
        assert "larger than this route accepts" in json.loads(body)["detail"]
    # A body where none is expected is no way around the limits either.
    status, _ = _send_raw(
        cluster.endpoint, "/api/experiments/keep/flags/f", 200 * MB, chunked=True, method="GET"
    )
    assert status == 413
    grown = _rss(cluster) - rss
    assert grown < 50 * MB, f"the controller grew by {grown / MB:.0f} MB"
    assert _state(alice) == before


def _families(experiment_id: str) -> list[str]:
    """One POST/PUT path of every route family (the executor paths need no real token:
    the body is refused before anyone is asked who sent it)."""
    return [
        "/api/token",
        "/api/logout",
        "/api/experiments",
        "/api/experiments/keep/flags/f",
        "/api/experiments/keep/flags/f/wait",
        "/api/executor/flags/f",
        "/api/executors/cancel",
        "/api/runs",
        "/api/runs/keep/finish",
        "/netunicorn/api/v1/token",
        "/netunicorn/api/v1/experiment/keep/prepare",
        "/netunicorn/api/v1/experiment/keep/flag/f",
        "/netunicorn/api/v1/executors/cancel",
        "/netunicorn/gateway/no-token/api/v1/executor/result",
        f"/netunicorn/gateway/no-token/api/v1/experiment/{experiment_id}/flag/f",
    ]


@pytest.mark.timeout(120)
def test_deeply_nested_json_is_a_400_on_every_route(
    cluster: LocalCluster, alice: RemoteClient
) -> None:
    before = _state(alice)
    experiment_id = alice.raw_status("keep")["id"]
    just_too_deep = b"[" * 5000 + b"]" * 5000  # past Python's parser, under every size limit
    auth = {"Authorization": f"Bearer {alice.token()}", "Content-Type": "application/json"}
    with httpx.Client(base_url=cluster.endpoint, timeout=30) as http:
        for path in _families(experiment_id):
            for headers in (auth, {"Content-Type": "application/json"}, {}):
                for body in (just_too_deep, NESTED, b"[" * DEEP):
                    reply = http.post(path, content=body, headers=headers)
                    if len(body) > AUTH_LIMIT and path in AUTH_ROUTES:
                        # a login's body is capped below the size of 100k levels
                        assert reply.status_code == 413, (path, reply.text)
                        continue
                    assert reply.status_code == 400, (path, headers, reply.text)
                    assert "nested too deeply" in reply.json()["detail"], reply.text
            put = http.put(path, content=NESTED, headers=auth)
            assert 400 <= put.status_code < 500, (path, put.text)
        assert http.get("/api/health", headers=auth).status_code == 200
    assert _state(alice) == before


def _ws(endpoint: str, token: str, path: str):  # type: ignore[no-untyped-def]
    return connect(
        endpoint.replace("http://", "ws://") + path,
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    )


@pytest.mark.timeout(60)
def test_a_made_up_channel_ticket_is_refused(cluster: LocalCluster) -> None:
    """The node's side of a relayed channel opens only with the ticket its agent
    was sent; any other is refused, whoever asks."""
    alice = cluster.client("alice", "alice-pw").token()
    for token in (alice, "not-a-token"):
        try:
            with _ws(cluster.endpoint, token, "/api/channels/target/made-up") as stolen:
                stolen.recv(timeout=10)
            raise AssertionError("a made-up ticket opened a channel")
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 4404
        except InvalidStatus as exc:  # refused at the handshake is fine too
            assert exc.response.status_code == 403, exc


@pytest.mark.timeout(60)
def test_a_deployments_environment_that_an_executor_cannot_take_is_refused(
    alice: RemoteClient,
) -> None:
    """Raw REST, past the client's own checks: shoal's names, malformed names and
    values that are not strings get a 4xx naming them; nothing is prepared."""
    before = _state(alice)
    pipeline = base64.b64encode(cloudpickle.dumps(Pipeline().then(GetFlagTask("f")))).decode()
    where = "deployment 0 (node 'bad-1'): "
    cases = [
        (
            {"SHOAL_EXECUTOR_TOKEN": "stolen"},
            400,
            where + "environment variable 'SHOAL_EXECUTOR_TOKEN': SHOAL_* names are shoal's",
        ),
        ({"A=B": "1"}, 400, where + "environment variable 'A=B' is not valid"),
        ({"BIG": "x" * 70_000}, 400, where + "environment is over 65536 bytes"),
        ({"A": "x\u0000y"}, 400, "strings in the JSON body may not contain NUL characters"),
        ({"N": 3}, 422, "environment.N"),
    ]
    for environment, status, message in cases:
        deployment = {"node": "bad-1", "pipeline": pipeline, "environment": environment}
        with pytest.raises(RemoteClientException) as refused:
            alice._call(
                "POST", "/api/experiments", json={"name": "env", "deployments": [deployment]}
            )
        assert refused.value.status_code == status, refused.value
        assert message in str(refused.value), (message, str(refused.value))
    assert _state(alice) == before
