"""Increments answered before FastAPI's routing answer exactly as the routes do.

The controller answers the common increment itself (``flag_fast_path``) and
leaves everything else to the FastAPI routes. A user sees one API: the same
answers, the same errors, whichever of the two answered. A query string makes
the routes answer, so each case is asked both ways and compared.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from leak import RELEASE, steal_executor_token
from shoal import FlagValues, LocalCluster

INT_MAX = 2**31 - 1  # the largest int a flag stores


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["fast-1"]) as running:
        yield running


def _http(cluster: LocalCluster, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(base_url=cluster.endpoint, headers=headers, timeout=30)


def _both(http: httpx.Client, path: str) -> tuple[httpx.Response, httpx.Response]:
    """The answer of the fast path (if it takes the request), then of the routes."""
    return http.post(path), http.post(path, params={"via": "routes"})


def _same(fast: httpx.Response, routed: httpx.Response) -> None:
    assert fast.status_code == routed.status_code, (fast.text, routed.text)
    assert fast.headers["content-type"] == routed.headers["content-type"]
    if fast.status_code != 200:  # a 200's version moves on; an error's text must not
        assert fast.json() == routed.json()
        assert fast.headers.get("www-authenticate") == routed.headers.get("www-authenticate")


@pytest.mark.timeout(120)
def test_increments_answer_the_same_on_either_path(cluster: LocalCluster) -> None:
    client = cluster.client()
    client.open_run("fast")
    path = "/api/experiments/fast/flags/count/increment"
    with _http(cluster, client.token()) as http:
        first = http.post(path)  # the name is looked up in the store by the routes
        assert first.json() == {"text_value": None, "int_value": 1, "version": 1}
        fast, routed = _both(http, path)
        _same(fast, routed)
        assert fast.json() == {"text_value": None, "int_value": 2, "version": 2}
        assert routed.json() == {"text_value": None, "int_value": 3, "version": 3}
        down = http.post("/api/experiments/fast/flags/count/decrement")
        assert down.json()["int_value"] == 2
        # A body (even an empty JSON one) goes to the routes, which ignore it.
        assert http.post(path, json={}).json()["int_value"] == 3
    assert client.get_flag_values("fast", "count") == FlagValues(None, 3)


@pytest.mark.timeout(120)
def test_errors_are_the_routes_whichever_path_is_asked(cluster: LocalCluster) -> None:
    client = cluster.client()
    client.open_run("errors")
    good = "/api/experiments/errors/flags/n/increment"
    with _http(cluster, client.token()) as http:
        assert http.post(good).status_code == 200  # the name is known from here on
        # Past the storable range: refused, nothing changed, on both paths.
        client.set_flag_values("errors", "n", FlagValues("top", INT_MAX))
        fast, routed = _both(http, good)
        _same(fast, routed)
        assert fast.status_code == 409 and "range" in fast.json()["detail"]
        assert client.get_flag_values("errors", "n") == FlagValues("top", INT_MAX)
        for bad in (
            "/api/experiments/nobody/flags/n/increment",  # not an experiment of this user
            "/api/experiments/errors/flags/" + "x" * 256 + "/increment",  # name too long
            "/api/experiments/errors/flags/a%00b/increment",  # a NUL no store can hold
            "/api/executor/flags/n/increment",  # a user token on the executor's route
        ):
            fast, routed = _both(http, bad)
            _same(fast, routed)
            assert fast.status_code in (400, 403, 404, 422), (bad, fast.text)
    for token in (None, "not-a-token"):
        with _http(cluster, token) as http:
            fast, routed = _both(http, good)
            _same(fast, routed)
            assert fast.status_code == 401


@pytest.mark.timeout(180)
def test_an_executor_token_reaches_only_its_own_experiment(cluster: LocalCluster) -> None:
    client = cluster.client()
    token = steal_executor_token(client, "leaky")
    try:
        with _http(cluster, token) as http:
            fast, routed = _both(http, "/api/executor/flags/mine/increment")
            _same(fast, routed)
            assert (fast.json()["int_value"], routed.json()["int_value"]) == (1, 2)
            # Its token is no user's: the user route refuses it on both paths.
            fast, routed = _both(http, "/api/experiments/leaky/flags/mine/increment")
            _same(fast, routed)
            assert fast.status_code == 403
        assert client.get_flag_values("leaky", "mine") == FlagValues(None, 2)
    finally:
        client.set_flag_values("leaky", RELEASE, FlagValues("go", 1))
        client.wait("leaky", timeout=60)
