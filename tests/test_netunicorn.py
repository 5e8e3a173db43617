"""netUnicorn's own client and executor run on shoal (issue 5).

The client side runs in a venv of its own with only the four netUnicorn
packages from PyPI (built once per test session); the agents run the
executor from shoal's environment (the ``netunicorn`` extra). The controller
is a real local cluster with the seed's nodes and the seed's user test/test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import httpx
import pytest

from conftest import SEED_NODES
from leak import steal_executor_token
from netunicorn_env import client_env, client_venv, run_python, run_script
from pgserver import PostgresServer
from processes import add_user, shoal
from shoal import LocalCluster
from shoal.compat.netunicorn.service import has_docker, heartbeat_for
from shoal.compat.netunicorn.task import NetunicornExecutor

DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "netunicorn.md"

SERVER_STEPS = [
    # netunicorn-library's SetFlagTask.run() returns nothing (in every release on
    # PyPI), so its steps are Success(None) where the seed notebook printed 0.
    "None",
    "{'text_value': 'stage 1', 'int_value': 3}",
    "None",
    "{'text_value': 'stage 2', 'int_value': 0}",
    "FlagValues(text_value='stage 2', int_value=0)",
]


@pytest.fixture(scope="session")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    python = client_venv(tmp_path_factory.mktemp("netunicorn-venv"))
    # It really is not shoal's environment.
    found = subprocess.run([str(python), "-c", "import shoal"], capture_output=True, timeout=60)
    assert found.returncode != 0
    return python


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(list(SEED_NODES)) as c:
        add_user(c.db_url, "test", "test")
        add_user(c.db_url, "other", "other")
        yield c


def scenario(python: Path, cluster: LocalCluster, name: str, cwd: Path, **extra: str) -> dict:
    env = client_env(
        cluster.endpoint,
        NETUNICORN_LOGIN="test",
        NETUNICORN_PASSWORD="test",
        OTHER_LOGIN="other",
        OTHER_PASSWORD="other",
        **extra,
    )
    return run_script(python, "netunicorn_scenarios.py", [name], env, cwd, timeout=150)[1]


def netunicorn_rows(db_url: str) -> tuple[int, int]:
    """(rows of the netUnicorn tables, of them not belonging to a stored experiment)."""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from shoal.store.netunicorn import netunicorn_deployments as nu
    from shoal.store.tables import experiments

    async def count() -> tuple[int, int]:
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                total = await conn.scalar(select(func.count()).select_from(nu))
                orphans = await conn.scalar(
                    select(func.count())
                    .select_from(nu)
                    .where(nu.c.experiment_id.not_in(select(experiments.c.id)))
                )
        finally:
            await engine.dispose()
        return int(total or 0), int(orphans or 0)

    return asyncio.run(count())


def check_seed(out: str, summary: dict) -> None:
    assert out.startswith("True\n")  # client.healthcheck()
    assert "status: ExperimentStatus.READY" in out and "status: ExperimentStatus.FINISHED" in out
    assert summary["status"] == "FINISHED"
    assert summary["prepared"] == [True] * 4
    assert len(set(summary["executors"])) == 4
    server = summary["outcomes"]["snl-server-5"]
    assert server == {"success": True, "steps": SERVER_STEPS, "error": None}
    for node, outcome in summary["outcomes"].items():
        assert outcome["success"], (node, outcome)
    assert summary["flag"] == "FlagValues(text_value='stage 2', int_value=0)"


def check_lifecycle(seen: dict) -> None:
    assert seen["prepare"] == seen["prepare_again"] == "lifecycle"
    assert seen["status_while_preparing"] == "PREPARING"
    assert "Status code: 409" in seen["start_while_preparing"]
    assert "still preparing" in seen["start_while_preparing"]
    assert seen["ready"] == "READY"
    assert seen["start"] == seen["start_again"] == "lifecycle"
    assert seen["running"] == "RUNNING"
    assert "Status code: 409" in seen["delete_while_running"]
    assert "cancel it before deleting it" in seen["delete_while_running"]
    assert seen["after_cancel_executor"] == "RUNNING"  # the other executor still runs
    assert seen["cancelled_executor_error"] == "cancelled"
    assert seen["after_cancel"] == "FINISHED"
    assert seen["cancel_errors"] == ["cancelled", "cancelled"]
    assert "was cancelled" in seen["start_after_cancel"]
    assert seen["listed_after_delete"] is False
    assert "Status code: 404" in seen["status_after_delete"]
    assert seen["prepared_again"] == "READY"
    assert seen["new_executor_ids"] is True
    assert seen["rerun_result"].startswith("<Success: ")
    assert seen["rerun_result"].endswith("': [<Success: 0>]})>")


def shoal_as_test(cluster: LocalCluster, *args: str) -> str:
    env = {
        "SHOAL_ENDPOINT": cluster.endpoint,
        "SHOAL_LOGIN": "test",
        "SHOAL_PASSWORD": "test",
        "COLUMNS": "200",
    }
    return shoal(*args, env=env)


@pytest.mark.timeout(240)
def test_seed_notebook_runs_unchanged(
    client_python: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    env = client_env(cluster.endpoint)  # login test/test: the notebook's defaults
    out, summary = run_script(client_python, "netunicorn_seed.py", [], env, tmp_path, 200)
    check_seed(out, summary)
    assert "[raspi-e4:5f:01:56:d8:cd, raspi-e4:5f:01:75:6b:2c, raspi-e4:5f:01:9b:85:9c]" in out
    assert "[snl-server-5]\n" in out

    # The same experiment, users, flags and nodes as seen through shoal itself.
    with cluster.client("test", "test") as client:
        raw = client.raw_status("flags-experiment-1")
        assert raw["kind"] == "netunicorn" and raw["status"] == "FINISHED"
        assert [d["executor_id"] for d in raw["deployments"]] == summary["executors"]
        assert [d["state"] for d in raw["deployments"]] == ["finished"] * 4
    listed = shoal_as_test(cluster, "experiments")
    assert "flags-experiment-1" in listed and "FINISHED" in listed
    flags = shoal_as_test(cluster, "flags", "flags-experiment-1")
    assert "clients_control" in flags and "'stage 2'" in flags


@pytest.mark.timeout(180)
def test_docs_page_runs_in_netunicorns_own_environment(
    client_python: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    """docs/netunicorn.md's code, in order (it deletes and prepares the seed's name again)."""
    code = "\n\n".join(re.findall(r"```py\n(.*?)```", DOCS_PAGE.read_text(), flags=re.S))
    assert "RemoteClient(endpoint=endpoint, login=login, password=password)" in code
    script = tmp_path / "notebook.py"
    script.write_text(code)
    out = run_python(client_python, script, [], client_env(cluster.endpoint), tmp_path, 150)
    assert "status: ExperimentStatus.FINISHED" in out
    assert out.rstrip().endswith("text_value='stage 2' int_value=0")


@pytest.mark.timeout(180)
def test_prepare_start_cancel_delete_and_prepare_again(
    client_python: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    seen = scenario(client_python, cluster, "lifecycle", tmp_path, GATE_FILE=str(tmp_path / "gate"))
    check_lifecycle(seen)
    total, orphans = netunicorn_rows(cluster.db_url)
    assert total > 0 and orphans == 0  # deleting an experiment removed its netUnicorn rows


@pytest.mark.timeout(120)
def test_a_second_user_cannot_see_the_first_users_experiment(
    client_python: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    seen = scenario(client_python, cluster, "isolation", tmp_path)
    assert seen["owner_lists"] is True
    assert seen["other_lists"] is False
    for call in ("status", "get_flag", "set_flag", "start", "cancel", "delete"):
        assert "Status code: 404" in seen[f"other_{call}"], (call, seen)
    assert "Status code: 404" in seen["other_cancel_executor"]
    assert seen["other_prepare"] == "private"
    assert seen["other_sees_own"] == "READY"
    assert seen["owner_flag"] == "FlagValues(text_value='owner', int_value=7)"
    assert seen["owner_status"] == "READY"


@pytest.mark.timeout(120)
def test_a_silent_executor_fails_at_its_keep_alive(
    client_python: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    seen = scenario(client_python, cluster, "keep_alive", tmp_path)
    assert seen["keep_alive"] == [0.05, 0.05]
    assert "keep-alive timeout" in seen["silent_error"], seen
    assert seen["seconds"] < 60  # the silent task alone would have slept 120 s
    # heartbeats (every second, to /executor/result/) kept the other one alive for 6 s
    assert seen["beating_error"] is None
    assert seen["beating_result"].endswith("': [<Success: 6>]})>"), seen


@pytest.mark.timeout(120)
def test_a_docker_image_needs_a_node_with_docker(
    client_python: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    seen = scenario(client_python, cluster, "docker", tmp_path)
    assert "Status code: 400" in seen["refused"]
    assert "DockerImage('alpine:3') needs a Docker engine" in seen["refused"]
    assert seen["created"] is False


@pytest.mark.timeout(120)
def test_environment_and_the_gateway_scope(
    client_python: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    seen = scenario(client_python, cluster, "environment", tmp_path)
    env = seen["task_env"]
    assert env["GREETING"] == "hello from netUnicorn"
    assert env["NETUNICORN_EXECUTOR_ID"] == seen["executor_id"]
    assert seen["commands"] == ["true"]
    gateway = env["NETUNICORN_GATEWAY_ENDPOINT"]
    assert gateway.startswith(f"{cluster.endpoint}/netunicorn/gateway/")
    experiment_id = env["NETUNICORN_EXPERIMENT_ID"]
    executor_id = env["NETUNICORN_EXECUTOR_ID"]
    with httpx.Client(timeout=10) as http:
        # the executor's token ended with its deployment
        ended = f"{gateway}/api/v1/experiment/{experiment_id}/flag/probe"
        assert http.get(ended).status_code == 401
        graph = f"{gateway}/api/v1/executor/execution_graph?executor_id={executor_id}"
        assert http.get(graph).status_code == 401
    with cluster.client("test", "test") as client:
        client.delete_experiment("environment")
        # A running executor's gateway reaches its own experiment's flags, nothing else.
        live = steal_executor_token(client, "gateway-scope")
        live_experiment = client.raw_status("gateway-scope")["id"]
        gateway = f"{cluster.endpoint}/netunicorn/gateway/{live}"
        flag = f"{gateway}/api/v1/experiment/{live_experiment}/flag/probe"
        with httpx.Client(timeout=10) as http:
            assert http.get(flag).status_code == 404  # not set yet
            assert http.post(flag, json={"text_value": "t", "int_value": 1}).status_code == 200
            assert http.post(f"{flag}/increment").json() == {"text_value": "t", "int_value": 2}
            assert http.get(flag).json() == {"text_value": "t", "int_value": 2}
            other = f"{gateway}/api/v1/experiment/{uuid.uuid4()}/flag/probe"
            assert http.get(other).status_code == 403
            stranger = f"{gateway}/api/v1/executor/execution_graph?executor_id={uuid.uuid4()}"
            assert http.get(stranger).status_code == 404
            forged = f"{cluster.endpoint}/netunicorn/gateway/forged/api/v1/experiment"
            assert http.get(f"{forged}/{live_experiment}/flag/probe").status_code == 401
            # an executor's token is not a user's
            user_call = http.get(
                f"{cluster.endpoint}/netunicorn/api/v1/experiment",
                headers={"Authorization": f"Bearer {live}"},
            )
            assert user_call.status_code == 403
        # shoal's own flags of the experiment are the same flags
        assert client.get_flag_values("gateway-scope", "probe").int_value == 2
        client.cancel_experiment("gateway-scope")
        assert httpx.get(flag, timeout=10).status_code == 401
        client.delete_experiment("gateway-scope")


@pytest.mark.timeout(30)
def test_login_and_tokens(cluster: LocalCluster) -> None:
    api = f"{cluster.endpoint}/netunicorn/api/v1"
    with httpx.Client(timeout=10) as http:
        assert (
            http.post(f"{api}/token", data={"username": "test", "password": "x"}).status_code == 401
        )
        assert http.post(f"{api}/token", json={"username": "test"}).status_code == 401
        got = http.post(f"{api}/token", data={"username": "test", "password": "test"})
        assert got.status_code == 200 and got.json()["token_type"] == "bearer"
        auth = {"Authorization": f"Bearer {got.json()['access_token']}"}
        assert http.get(f"{api}/verify_token", headers=auth).status_code == 200
        assert http.get(f"{api}/verify_token").status_code == 401
        assert http.get(f"{api}/health", headers=auth).json() == "OK"
        pool = http.get(f"{api}/nodes", headers=auth).json()
        assert pool["node_pool_type"] == "CountableNodePool"
        assert sorted(n["name"] for n in pool["node_pool_data"]) == sorted(SEED_NODES)
        for node in pool["node_pool_data"]:
            assert node["architecture"] in ("linux/amd64", "linux/arm64", "unknown")


def test_executor_command_lines() -> None:
    direct = NetunicornExecutor("/netunicorn/gateway", {"A": "1"}, heartbeat_seconds=5)
    ids = {
        "NETUNICORN_GATEWAY_ENDPOINT": "http://c/netunicorn/gateway/T",
        "NETUNICORN_EXECUTOR_ID": "e1",
        "NETUNICORN_EXPERIMENT_ID": "x1",
    }
    argv, env = direct.command(ids)
    assert argv[1:] == ["-m", "netunicorn.executor"]
    assert env["A"] == "1" and env["NETUNICORN_EXECUTOR_HEARTBEAT_SECONDS"] == "5"
    assert env["NETUNICORN_EXECUTOR_ID"] == "e1"
    boxed = NetunicornExecutor(
        "/netunicorn/gateway",
        {"NETUNICORN_EXECUTOR_ID": "spoofed"},
        image="lab/probe:1",
        ports={8080: 80},
        network="bridge",
    )
    argv, _ = boxed.command(ids)
    assert argv[:5] == ["docker", "run", "--name", "netunicorn-e1", "--rm"]
    assert argv[5:7] == ["--network", "bridge"] and argv[7:9] == ["-p", "8080:80"]
    assert "NETUNICORN_EXECUTOR_ID=e1" in argv and "NETUNICORN_EXECUTOR_ID=spoofed" not in argv
    assert argv[-1] == "lab/probe:1"
    assert heartbeat_for(600) == 30 and heartbeat_for(3) == 1 and heartbeat_for(60) == 20
    assert has_docker({"docker": "27.1"}) and not has_docker({"docker": "no"})
    assert not has_docker({})


def test_a_node_that_cannot_run_executors_fails_at_prepare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check runs when the agent's executor unpickles the task, i.e. at prepare."""
    direct = cloudpickle.dumps(NetunicornExecutor("/netunicorn/gateway"))
    boxed = cloudpickle.dumps(NetunicornExecutor("/netunicorn/gateway", image="lab/probe:1"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install 'shoal\[netunicorn\]'"):
        cloudpickle.loads(direct)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs the docker command"):
        cloudpickle.loads(boxed)


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_seed_notebook_and_lifecycle_on_postgresql(client_python: Path, tmp_path: Path) -> None:
    with PostgresServer() as pg, LocalCluster(list(SEED_NODES), db_url=pg.url) as pg_cluster:
        add_user(pg.url, "test", "test")
        env = client_env(pg_cluster.endpoint)
        out, summary = run_script(client_python, "netunicorn_seed.py", [], env, tmp_path, 200)
        check_seed(out, summary)
        gate = str(tmp_path / "gate")
        check_lifecycle(scenario(client_python, pg_cluster, "lifecycle", tmp_path, GATE_FILE=gate))
        total, orphans = netunicorn_rows(pg.url)
        assert total == 4 and orphans == 0  # the seed's four deployments are left
