"""A Python task's function travels once, not with every task (issue 13).

The client sends a function once per session, the controller sends it to a
node with the first task of it on each connection (again after the node
reconnects), and the node's workers get it once. Real controller, real agents;
a probe node (which runs nothing) shows what the controller sends a node.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterator

import cloudpickle
import pytest

from probe_node import ProbeNode
from shoal import LocalCluster
from shoal.client import serialize
from shoal.graph import Client, Output, remote
from shoal.graph.wire_transport import WireTransport
from shoal.protocol import Welcome
from shoal.protocol.graph_messages import GraphRun, Submit

# Part of the function's pickle (a closure over it): a function that would cost
# this much per task if it travelled with each one.
BALLAST = hashlib.sha256(b"ballast").digest() * 2_000  # 64 KB


@remote(outputs=Output(encode="pickle"))
def heavy(ctx, i):
    return len(BALLAST) + i


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["node-0"], cpus=1) as c:
        yield c


def client_of(cluster: LocalCluster) -> Client:
    return Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password)


def collect_runs(probe: ProbeNode, tasks: int) -> list[GraphRun]:
    """The GraphRuns the probe gets until they hold ``tasks`` tasks."""
    runs: list[GraphRun] = []
    while sum(len(r.tasks) for r in runs) < tasks:
        run = probe.next_of(GraphRun)
        assert isinstance(run, GraphRun)
        runs.append(run)
    return runs


@pytest.mark.timeout(120)
def test_a_function_goes_to_a_node_once_and_again_after_it_reconnects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the client sends, seen on its way to the wire.
    submits: list[Submit] = []
    send = WireTransport._send

    def spy(self: WireTransport, *messages: object) -> None:
        submits.extend(m for m in messages if isinstance(m, Submit))
        send(self, *messages)

    monkeypatch.setattr(WireTransport, "_send", spy)
    # No agent but the probe: every task goes to it, and it holds them.
    with LocalCluster([]) as cluster:
        probe = ProbeNode(cluster.endpoint, cluster.agent_token, name="probe", cpus=4)
        try:
            sends_once_then_again(cluster, probe)
        finally:
            probe.close()
    # Two submits of the function's tasks in one session: it went with the first only.
    assert [len(s.functions) for s in submits] == [1, 0]
    assert sum(len(s.tasks) for s in submits) == 40


def sends_once_then_again(cluster: LocalCluster, probe: ProbeNode) -> None:
    """Forty tasks of one function: the probe gets it once, then once more after it reconnects."""
    with client_of(cluster) as client, client.new_session() as session:
        for part in (range(20), range(20, 40)):
            for i in part:
                heavy(i)
            session.submit()
        welcome = probe.next_of(Welcome)
        assert isinstance(welcome, Welcome) and welcome.credential
        # The probe runs nothing: it is sent as many as its window holds.
        runs = collect_runs(probe, 4)
        digests = {t.function for r in runs for t in r.tasks}
        assert len(digests) == 1 and "" not in digests
        (digest,) = digests
        sent = [data for r in runs for d, data in r.functions.items()]
        assert len(sent) == 1, "the function went to the node more than once"
        assert hashlib.sha256(sent[0]).hexdigest() == digest
        assert len(sent[0]) > len(BALLAST)
        # The tasks themselves are small: the function is not in their config.
        assert all(len(t.config) < 1_000 for r in runs for t in r.tasks)
        held = {t.id for r in runs for t in r.tasks}

        # The node reconnects (as after a restart, with nothing): the tasks it
        # had are sent again, with the function.
        probe.close()
        # (A node shows the credential it was enrolled with from then on.)
        probe = ProbeNode(cluster.endpoint, welcome.credential, name="probe", cpus=4)
        try:
            again = collect_runs(probe, len(held))
        finally:
            probe.close()
        assert {t.id for r in again for t in r.tasks} >= held
        assert [d for r in again for d in r.functions] == [digest]


@pytest.mark.timeout(180)
def test_a_restarted_agent_runs_tasks_of_a_function_it_had_not_seen(
    cluster: LocalCluster,
) -> None:
    with client_of(cluster) as client, client.new_session() as session:
        first = [heavy(i) for i in range(20)]
        for t in first:
            t.output.keep()
        session.submit()
        assert [t.output.fetch().load() for t in first] == [len(BALLAST) + i for i in range(20)]

        # A new agent process under the same name: it knows no function, and
        # the session (all of whose data is on the controller) goes on.
        cluster.kill_agent("node-0")
        cluster.start_agent("node-0")
        cluster.client().wait_for_nodes(["node-0"], 60)
        second = [heavy(i) for i in range(20, 60)]
        for t in second:
            t.output.keep()
        session.submit()
        assert [t.output.fetch().load() for t in second] == [
            len(BALLAST) + i for i in range(20, 60)
        ]


# A user's modules beside their script: a remote function calling a helper of
# its own module, which calls one imported from another of the user's modules,
# which calls a third; and a class of that other module as an argument.
USER_HELPERS = """
class Scale:
    def __init__(self, factor):
        self.factor = factor


def _factor(scale):
    return scale.factor


def times(x, scale):
    return x * _factor(scale)
"""
USER_TASKS = """
from shoal.graph import Output, remote

from lab_helpers_by_value import times


def helper(x, scale):
    return times(x, scale)


@remote(outputs=Output(encode="pickle"))
def scaled(ctx, x, scale):
    return helper(x, scale)
"""


@pytest.mark.timeout(120)
def test_a_function_from_the_users_own_modules_runs_with_its_helpers(
    cluster: LocalCluster, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The node cannot import the modules (they are in no folder the node knows):
    # the helpers and the class travel with the function, by value.
    (tmp_path / "lab_helpers_by_value.py").write_text(USER_HELPERS)
    (tmp_path / "lab_tasks_by_value.py").write_text(USER_TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        lab = importlib.import_module("lab_tasks_by_value")
        helpers = importlib.import_module("lab_helpers_by_value")
        with client_of(cluster) as client, client.new_session() as session:
            tasks = [lab.scaled(i, helpers.Scale(3)) for i in range(4)]
            for t in tasks:
                t.output.keep()
            session.submit()
            assert [t.output.fetch().load() for t in tasks] == [0, 3, 6, 9]
    finally:
        for name in ("lab_tasks_by_value", "lab_helpers_by_value"):
            sys.modules.pop(name, None)


def test_a_module_the_user_registered_by_value_stays_registered(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lab_registered_by_value.py").write_text(USER_HELPERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        lab = importlib.import_module("lab_registered_by_value")
        serialize.dumps(lab.times)  # registered for the call only
        assert "lab_registered_by_value" not in cloudpickle.list_registry_pickle_by_value()
        cloudpickle.register_pickle_by_value(lab)
        try:
            serialize.dumps(lab.times)
            assert "lab_registered_by_value" in cloudpickle.list_registry_pickle_by_value()
        finally:
            cloudpickle.unregister_pickle_by_value(lab)
    finally:
        sys.modules.pop("lab_registered_by_value", None)
