"""Tokens, ownership and bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from shoal import Experiment, FlagValues, LocalCluster, Pipeline, RemoteClient
from shoal import RemoteClientException as Refused
from shoal.library.flags import GetFlagTask


@pytest.fixture(scope="module")
def two_users(seed_cluster: LocalCluster) -> tuple[RemoteClient, RemoteClient]:
    from processes import add_user

    db = seed_cluster.db_url
    add_user(db, "alice", "alice-pw")
    add_user(db, "bob", "bob-pw")
    alice = seed_cluster.client("alice", "alice-pw")
    bob = seed_cluster.client("bob", "bob-pw")
    pipeline = Pipeline().then(GetFlagTask("f"))
    alice.prepare_experiment(Experiment().map(pipeline, alice.get_nodes().take(1)), "secret")
    alice.set_flag_values("secret", "f", FlagValues("alice", 1))
    alice.wait("secret", until="ready")
    return alice, bob


def _paths(endpoint: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{endpoint}/openapi.json").json()
    out = []
    for path, methods in spec["paths"].items():
        concrete = path.replace("{name}", "x").replace("{flag}", "f")
        out += [(method.upper(), concrete) for method in methods]
    return out


@pytest.mark.timeout(60)
def test_no_call_works_without_a_token(seed_cluster: LocalCluster) -> None:
    paths = _paths(seed_cluster.endpoint)
    assert len(paths) > 15
    with httpx.Client(base_url=seed_cluster.endpoint) as http:
        for method, path in paths:
            if path == "/api/token":
                continue
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                reply = http.request(method, path, headers=headers, json={})
                assert reply.status_code == 401, (method, path, reply.status_code, reply.text)


@pytest.mark.timeout(30)
def test_wrong_password_is_refused(seed_cluster: LocalCluster) -> None:
    with pytest.raises(Refused) as caught:
        RemoteClient(seed_cluster.endpoint, seed_cluster.login, "wrong").get_nodes()
    assert caught.value.status_code == 401
    assert not RemoteClient(seed_cluster.endpoint, "nobody", "x").healthcheck()


@pytest.mark.timeout(60)
def test_users_cannot_touch_each_others_experiments(two_users) -> None:
    alice, bob = two_users
    assert "secret" in alice.get_experiments()
    assert "secret" not in bob.get_experiments()
    for call in (
        lambda: bob.get_experiment_status("secret"),
        lambda: bob.get_flag_values("secret", "f"),
        lambda: bob.set_flag_values("secret", "f", FlagValues("bob", 2)),
        lambda: bob.cancel_experiment("secret"),
        lambda: bob.delete_experiment("secret"),
        lambda: bob.start_execution("secret"),
        lambda: bob.get_logs("secret"),
    ):
        with pytest.raises(Refused) as caught:
            call()
        assert caught.value.status_code == 404
    executor_id = alice.get_experiment_status("secret").experiment.deployment_map[0].executor_id
    with pytest.raises(Refused):
        bob.cancel_executors([executor_id])
    # bob may use the same name for his own experiment
    bob.prepare_experiment(
        Experiment().map(Pipeline().then(GetFlagTask("f")), bob.get_nodes().take(1)), "secret"
    )
    assert alice.get_flag_values("secret", "f") == FlagValues("alice", 1)
    assert alice.get_experiment_status("secret").status.name == "READY"
    alice.cancel_experiment("secret")
    bob.cancel_experiment("secret")


@pytest.mark.timeout(30)
def test_executor_tokens_reach_only_their_flags(seed_cluster: LocalCluster, client) -> None:
    """A user token is not an executor token, and the reverse."""
    token = client._token or (client.healthcheck() and client._token)
    reply = httpx.get(
        f"{seed_cluster.endpoint}/api/executor/flags/f",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 403
    assert "executor token" in reply.json()["detail"]


@pytest.mark.timeout(30)
def test_agent_without_the_join_token_is_refused(seed_cluster: LocalCluster, tmp_path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "agent",
            "--controller",
            seed_cluster.endpoint,
            "--name",
            "intruder",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=25,
        env={**os.environ, "SHOAL_AGENT_TOKEN": "wrong"},
    )
    assert done.returncode == 2
    assert "wrong join token" in done.stderr
    names = [n["name"] for n in seed_cluster.client().raw_nodes(include_offline=True)]
    assert "intruder" not in names


@pytest.mark.timeout(60)
def test_malformed_requests_get_a_4xx_with_a_message(seed_cluster: LocalCluster, client) -> None:
    client.healthcheck()
    auth = {"Authorization": f"Bearer {client._token}"}
    cases = [
        ("POST", "/api/token", {"content": b"{not json"}),
        ("POST", "/api/token", {"json": {"login": 5, "password": []}}),
        ("POST", "/api/experiments", {"content": b"{not json", "headers": auth}),
        ("POST", "/api/experiments", {"json": {"name": 3}, "headers": auth}),
        ("POST", "/api/experiments", {"json": {"name": "x", "deployments": "no"}, "headers": auth}),
        ("POST", "/api/experiments", {"json": {"name": "x", "deployments": []}, "headers": auth}),
        (
            "POST",
            "/api/experiments",
            {
                "json": {
                    "name": "a/b",
                    "deployments": [{"node": "snl-server-5", "pipeline": "AAAA"}],
                },
                "headers": auth,
            },
        ),
        (
            "POST",
            "/api/experiments",
            {
                "json": {"name": "x", "deployments": [{"node": "snl-server-5", "pipeline": "***"}]},
                "headers": auth,
            },
        ),
        ("PUT", "/api/experiments/x/flags/f", {"json": {"int_value": "three"}, "headers": auth}),
        ("PUT", "/api/experiments/x/flags/f", {"json": [1, 2], "headers": auth}),
        ("POST", "/api/experiments/x/flags/f/wait", {"json": {"timeout": -1}, "headers": auth}),
        ("GET", "/api/experiments/x/wait?timeout=abc", {"headers": auth}),
        ("POST", "/api/executors/cancel", {"json": {"executors": [1]}, "headers": auth}),
    ]
    with httpx.Client(base_url=seed_cluster.endpoint) as http:
        for method, path, kwargs in cases:
            reply = http.request(method, path, **kwargs)
            assert 400 <= reply.status_code < 500, (method, path, kwargs, reply.text)
            assert reply.json().get("detail"), reply.text
        assert http.get("/api/health", headers=auth).status_code == 200


@pytest.mark.timeout(60)
def test_a_pipeline_that_cannot_be_loaded_fails_its_deployment(client: RemoteClient) -> None:
    import base64

    body = {
        "name": "garbage",
        "deployments": [
            {"node": "snl-server-5", "pipeline": base64.b64encode(b"not a pickle").decode()}
        ],
    }
    client._call("POST", "/api/experiments", json=body)
    info = client.wait("garbage", until="ready")
    assert info.status.name == "FAILED"
    assert "could not load the pipeline" in info.experiment.deployment_map[0].error
    client.delete_experiment("garbage")
