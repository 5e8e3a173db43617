"""A controller with --tls-cert/--tls-key: clients, agents and executors all speak TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from processes import Controller, add_user, free_port, start_agent, stop_all
from shoal import Experiment, FlagValues, Pipeline, RemoteClient, RemoteClientException
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


@pytest.mark.timeout(120)
def test_everything_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    # Clients, agents and executors trust this one certificate, as a real
    # deployment would trust its own CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
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
