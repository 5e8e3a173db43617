"""A controller with --tls-cert/--tls-key: clients, agents and executors all speak TLS."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from processes import Controller, add_user, free_port, start_agent, stop_all
from shoal import Experiment, FlagValues, Pipeline, RemoteClient, RemoteClientException
from shoal.graph import wire_transport
from shoal.graph.session import GraphError
from shoal.library.flags import GetFlagTask, SetFlagTask


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def trusted_certificate(directory: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) that clients, agents and executors
    started from here trust, as a real deployment would trust its own CA."""
    cert, key = self_signed(directory)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


@pytest.mark.timeout(120)
def test_everything_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = trusted_certificate(tmp_path, monkeypatch)
    db = f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}"
    add_user(db, "tls-user", "pw")
    port = free_port()
    controller = Controller(
        db,
        port,
        "join",
        tmp_path / "controller.log",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    controller.endpoint = f"https://127.0.0.1:{port}"
    controller.start()
    agent = start_agent(controller.endpoint, "join", "secure-node", tmp_path / "agent.log")
    try:
        with RemoteClient(controller.endpoint, "tls-user", "pw") as client:
            client.wait_for_nodes(["secure-node"], timeout=30)
            pipeline = (
                Pipeline()
                .then(SetFlagTask("f", FlagValues("over tls", 1)))
                .then(GetFlagTask("f", name="read"))
            )
            client.prepare_experiment(Experiment().map(pipeline, client.get_nodes()), "tls")
            client.wait("tls", until="ready", timeout=30)
            client.start_execution("tls")
            result = client.wait("tls", timeout=30).execution_result[0].result
            assert result.unwrap()["read"][0].unwrap() == FlagValues("over tls", 1)
            lines: list[str] = []
            state = client.commands().run(
                "secure-node", "echo hello", handlers={"stdout": lines.append}
            )
            assert state.done.wait(20) and state.code == 0 and lines == ["hello"]
        # plain http to a TLS controller does not get through
        with pytest.raises(RemoteClientException, match="cannot reach"):
            RemoteClient(f"http://127.0.0.1:{port}", "tls-user", "pw").get_nodes()
    finally:
        stop_all([agent])
        controller.stop()


@pytest.mark.timeout(60)
def test_a_graph_client_gives_up_on_a_tls_server_that_never_answers_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that finishes TLS (and sends its session tickets) but never
    # answers the WebSocket upgrade, as a controller too loaded to answer in
    # time: each attempt times out and the client says so. websockets' reader
    # thread used to stay blocked in the TLS read, and the client hung for good.
    cert, key = trusted_certificate(tmp_path, monkeypatch)
    monkeypatch.setattr(wire_transport, "OPEN_TIMEOUT", 0.5)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[ssl.SSLSocket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                tls = context.wrap_socket(conn, server_side=True)
                tls.recv(65536)  # the upgrade request, left unanswered
                held.append(tls)

    server = threading.Thread(target=accept, daemon=True)
    server.start()
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(GraphError, match="cannot open the graph stream"):
            wire_transport.WireTransport(url, "token", retry_deadline=1.5)
        assert held, "the client never reached the upgrade"
    finally:
        stop.set()
        server.join(10)
        listener.close()
        for tls in held:
            tls.close()
