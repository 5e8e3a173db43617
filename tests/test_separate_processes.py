"""`shoal controller` and `shoal agent` as separate processes, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import SEED_NODES
from flags_experiment import SERVER_VALUES, run_flags_experiment
from pgserver import PostgresServer
from processes import Controller, add_user, free_port, shoal, start_agent, stop_all
from shoal import FlagValues, RemoteClient


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}"
    pg: PostgresServer = request.getfixturevalue("postgres")
    return pg.url


@pytest.mark.timeout(180)
def test_flags_experiment_on_separate_processes(db_url: str, tmp_path) -> None:
    # the operator's steps: create a user, start the controller, start agents elsewhere
    add_user(db_url, "test", "test")
    token = "join-" + tmp_path.name
    controller = Controller(db_url, free_port(), token, tmp_path / "controller.log").start()
    agents = []
    try:
        for name in SEED_NODES:
            agents.append(
                start_agent(
                    controller.endpoint,
                    token,
                    name,
                    tmp_path / f"{name}.log",
                    "--property",
                    f"role={name.split('-')[0]}",
                )
            )
        with RemoteClient(controller.endpoint, "test", "test") as client:
            client.wait_for_nodes(SEED_NODES, timeout=60)
            nodes = {n.name: n for n in client.get_nodes()}
            assert nodes["snl-server-5"].properties["role"] == "snl"
            assert run_flags_experiment(client, "flags-experiment-1") == SERVER_VALUES
            assert client.get_flag_values("flags-experiment-1", "clients_control") == FlagValues(
                "stage 2", 0
            )
        # what an operator sees
        env = {
            "SHOAL_ENDPOINT": controller.endpoint,
            "SHOAL_LOGIN": "test",
            "SHOAL_PASSWORD": "test",
            "COLUMNS": "200",
        }
        assert "snl-server-5" in shoal("nodes", env=env)
        assert "FINISHED" in shoal("experiments", env=env)
        flags_out = shoal("flags", "flags-experiment-1", env=env)
        assert "clients_control" in flags_out and "'stage 2'" in flags_out
        status_out = shoal("status", "flags-experiment-1", env=env)
        assert "FINISHED" in status_out and "raspi-e4:5f:01:56:d8:cd" in status_out
    finally:
        stop_all(agents)
        controller.stop()
