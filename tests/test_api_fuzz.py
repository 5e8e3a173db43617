"""Fuzz every HTTP operation of a real controller: bad input gets a 4xx, never a 5xx.

Schemathesis reads the controller's own OpenAPI schema (``/openapi.json``) and,
for each operation, sends the coverage phase's boundary values, type mutations
and wrong methods, plus ``MAX_EXAMPLES`` Hypothesis-generated requests, valid
(positive) and invalid (negative). It runs on SQLite and on PostgreSQL, which
refuses more (NUL characters, out-of-range integers, over-long strings).

Every request carries a real bearer token: a user's, or for the executor flag
routes an executor's (a running experiment's task leaks its own; executor
tokens end with their deployment). When the fuzzer
logs the user's token out (``POST /api/logout``), the user logs in again. Negative cases may
drop or mangle it; that is the 401 path, fuzzed too. An experiment ``x`` with a
flag ``f`` exists (prepared again whenever the fuzzer deletes it), and three in
four generated path parameters naming an experiment, a flag, an executor token
or an experiment id are replaced by real ones, so the routes run against real
rows instead of stopping at a 404.

What is asserted, per response:

* ``not_a_server_error``: no 5xx.
* ``response_schema_conformance`` and ``content_type_conformance``: where the
  schema declares the status (FastAPI declares 200 and 422 per route), the body
  and content type match it.
* ``ignored_auth``: an operation that answers 2xx with the token refuses the
  same request without one, and with a wrong one.

Not asserted, because FastAPI's declared schema is too loose for them:
``status_code_conformance`` (routes refuse with 400, 401, 403, 404 and 409 and a
``detail`` message, none declared, so every clean refusal would fail it);
``positive_data_acceptance`` (a schema-valid request may still be refused, e.g. a
deployment on an unknown node gets a 400); ``negative_data_rejection`` (pydantic
coerces some values the schema calls invalid, e.g. ``"after": false`` in a flag
wait is 0).

Long polls are held open at most ``LONG_POLL`` seconds: the ``map_case`` hook
lowers every ``timeout`` the route would accept (query or body) to it, and sets
it where it is missing (the default is 30 s). The WebSocket routes are not
fuzzed (they are not in the schema, and are excluded should they appear).
Nothing generated is ever sent to a real node: deployments name nodes by random
strings and the controller refuses unknown nodes (fuzzed ``requirements`` are
shell lines the node would run).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
)

from leak import steal_executor_token
from pgserver import PostgresServer
from shoal import Experiment, FlagValues, LocalCluster, Pipeline, RemoteClient
from shoal.library.basic import ShellCommand

EXPERIMENT = "x"
FLAG = "f"
MAX_EXAMPLES = 15  # generated requests per operation, on top of the coverage phase's
LONG_POLL = 0.05  # seconds a fuzzed long-poll request may be held open
MAX_TIMEOUT = 3600  # the largest `timeout` any route accepts
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, ignored_auth]


@dataclass
class Target:
    """A running cluster, its tokens, and the real values path parameters may take."""

    cluster: LocalCluster
    client: RemoteClient
    user_token: str
    executor_token: str
    real: dict[str, str] = field(default_factory=dict)

    def prepare_experiment(self) -> None:
        """(Re)create experiment ``x`` on one node with flag ``f`` set; it is not started."""
        pipeline = Pipeline().then(ShellCommand("echo fuzz", name="echo"))
        self.client.prepare_experiment(
            Experiment().map(pipeline, self.client.get_nodes().take(1)), EXPERIMENT
        )
        self.client.set_flag_values(EXPERIMENT, FLAG, FlagValues("fuzz", 1))

    def log_in_again(self) -> None:
        """After the fuzzer logged the user token out (POST /api/logout), get a new one."""
        self.client._token = None
        self.user_token = self.client.token()

    def token_for(self, path: str) -> str:
        return self.executor_token if path.startswith("/api/executor/") else self.user_token


def _executor_token(client: RemoteClient) -> tuple[str, str]:
    """A live executor token and its experiment's id: a running task leaks its own."""
    token = steal_executor_token(client, "token")
    client.set_flag_values("token", FLAG, FlagValues("fuzz", 1))
    return token, client.raw_status("token")["id"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    db_url = request.getfixturevalue("postgres").url if request.param == "postgresql" else None
    workdir = tmp_path_factory.mktemp(f"fuzz-{request.param}")  # kept: logs/controller.log
    with LocalCluster(["snl-server-5", "raspi-1"], workdir=workdir, db_url=db_url) as cluster:
        client = cluster.client()
        assert client.healthcheck()
        assert client._token is not None
        executor_token, experiment_id = _executor_token(client)
        found = Target(cluster, client, client._token, executor_token)
        found.real = {
            "name": EXPERIMENT,
            "flag": FLAG,
            "token": executor_token,
            "experiment_id": experiment_id,
        }
        found.prepare_experiment()
        client.wait(EXPERIMENT, until="ready", timeout=30)
        yield found


def _mostly(value: Any, real: str) -> Any:
    """``real`` for three generated strings in four (picked by hash: deterministic)."""
    if not isinstance(value, str):
        return value
    return real if zlib.crc32(value.encode("utf-8", "surrogatepass")) % 4 else value


def _bounded(value: Any) -> Any:
    """A timeout the route would accept, lowered to LONG_POLL; an invalid one is kept."""
    if isinstance(value, list):
        return [_bounded(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value
    try:
        seconds = float(value)
    except ValueError:
        return value
    if math.isfinite(seconds) and 0 <= seconds <= MAX_TIMEOUT:
        return min(seconds, LONG_POLL)
    return value


def _long_polls(raw: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(method, path, "query" or "body") of every operation that takes a ``timeout``."""
    components = raw.get("components", {}).get("schemas", {})
    found = set()
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("name") == "timeout":
                    found.add((method.upper(), path, "query"))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                body = media.get("schema", {})
                body = components.get(body.get("$ref", "").rsplit("/", 1)[-1], body)
                if "timeout" in body.get("properties", {}):
                    found.add((method.upper(), path, "body"))
    return found


@pytest.fixture(scope="module")
def api_schema(target: Target) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {"request-timeout": 10, "generation": {"deterministic": True, "database": "none"}}
    )
    schema = schemathesis.openapi.from_url(f"{target.cluster.endpoint}/openapi.json", config=config)
    long_polls = _long_polls(schema.raw_schema)
    assert len(long_polls) >= 4, long_polls  # the node, experiment and two flag waits

    def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
        for key, value in (case.path_parameters or {}).items():
            if key in target.real:
                case.path_parameters[key] = _mostly(value, target.real[key])
        operation = (case.operation.method.upper(), case.operation.path)
        if (*operation, "query") in long_polls:
            query = case.query if isinstance(case.query, dict) else {}
            query["timeout"] = _bounded(query.get("timeout", LONG_POLL))
            case.query = query
        if (*operation, "body") in long_polls and isinstance(case.body, dict):
            case.body["timeout"] = _bounded(case.body.get("timeout", LONG_POLL))
        return case

    schema.hook(map_case)
    # FastAPI leaves WebSocket routes (/api/agents/ws, /api/graph/ws) out of the schema;
    # should one ever appear there, it is not an HTTP operation to fuzz.
    return schema.exclude(path_regex=r"/ws$")


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:  # keep-alive: about a quarter faster than a socket each
        yield session


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis (4.32.5 at least) reads and rewrites `item._nodeid`, which pytest 9.2
    # replaced by `item._id`; give it the attribute (it only labels the per-operation subtests).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_bad_input_never_gives_a_server_error(
    case: schemathesis.Case, target: Target, http: requests.Session
) -> None:
    headers = {"Authorization": f"Bearer {target.token_for(case.path)}"}
    response = case.call_and_validate(headers=headers, session=http, checks=CHECKS)
    if (
        case.method.upper() == "DELETE"
        and case.path_parameters == {"name": EXPERIMENT}
        and response.status_code == 200
    ):
        target.prepare_experiment()
    if case.path == "/api/logout" and response.status_code == 200:
        target.log_in_again()


NODE = "snl-server-5"
SURROGATE = b'"\\ud800"'  # a lone UTF-16 surrogate, as JSON spells it


def _raw(body: bytes) -> bytes:
    return body.replace(b"SURROGATE", SURROGATE)


#: Requests that got a 500 before the fixes (method, path, JSON body, status, words of the answer).
FOUND = [
    # "base64" that is not ASCII raised ValueError, not binascii.Error
    ("POST", "/api/experiments", {"name": "y", "deployments": [{"node": NODE, "pipeline": "é"}]},
     400, "not base64"),
    # integers beyond the store's 32-bit columns (on SQLite: beyond 64 bits)
    ("PUT", "/api/experiments/token/flags/f", {"int_value": 2**70}, 422, "less than or equal"),
    ("GET", "/api/experiments/token/logs?after=1099511627776", None, 422, "less than or equal"),
    # NUL characters: PostgreSQL can neither store nor compare them
    ("PUT", "/api/experiments/token/flags/f", {"text_value": "a\x00b"}, 400, "NUL"),
    ("PUT", "/api/experiments/token/flags/a%00b", {"text_value": "v"}, 400, "NUL"),
    ("GET", "/api/experiments/a%00b", None, 400, "NUL"),
    ("POST", "/api/token", {"login": "a\x00", "password": "p"}, 400, "NUL"),
    ("POST", "/api/runs/r/finish", {"status": "FAILED", "error": "a\x00"}, 400, "NUL"),
    # longer than the store's columns: PostgreSQL refuses them
    ("PUT", "/api/experiments/token/flags/" + "a" * 256, {"text_value": "v"}, 422, "at most 255"),
    ("POST", "/api/experiments",
     {"name": "y", "deployments": [{"node": NODE, "pipeline": "AAAA"}], "kind": "k" * 33},
     422, "at most 32"),
    # lone surrogates: the store, an agent's link and FastAPI's own 422 cannot encode them
    ("PUT", "/api/experiments/token/flags/f", _raw(b'{"text_value": SURROGATE}'), 400, "surrogate"),
    ("POST", "/api/runs", _raw(b'{"name": SURROGATE}'), 400, "surrogate"),
    ("POST", "/api/experiments",
     _raw(b'{"name": "w", "deployments": [{"node": "snl-server-5", "pipeline": "AAAA",'
          b' "requirements": [SURROGATE]}]}'),
     400, "surrogate"),
]  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), FOUND)
def test_inputs_that_gave_a_500_get_a_clear_4xx(
    target: Target,
    http: requests.Session,
    method: str,
    path: str,
    body: Any,
    status: int,
    reason: str,
) -> None:
    headers = {"Authorization": f"Bearer {target.user_token}"}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        reply = http.request(method, target.cluster.endpoint + path, data=body, headers=headers)
    else:
        reply = http.request(method, target.cluster.endpoint + path, json=body, headers=headers)
    assert reply.status_code == status, reply.text
    assert reason in reply.text


@pytest.mark.timeout(60)
def test_adding_past_the_range_of_flag_values_is_a_conflict(
    target: Target, http: requests.Session
) -> None:
    headers = {"Authorization": f"Bearer {target.user_token}"}
    flag = f"{target.cluster.endpoint}/api/experiments/token/flags/edge"
    for value, step in ((2**31 - 1, "increment"), (-(2**31), "decrement")):
        assert http.put(flag, json={"int_value": value}, headers=headers).status_code == 200
        reply = http.post(f"{flag}/{step}", headers=headers)
        assert reply.status_code == 409, reply.text
        assert "range of flag values" in reply.json()["detail"]
        assert http.get(flag, headers=headers).json()["int_value"] == value
