"""netUnicorn's ExecutionGraph and CyclePipeline on shoal's pipelines API.

The rules and the walk are checked piece by piece first (shoal.model.execution_graph,
shoal.agent.execution_graph_walk); then the same graphs run on a real agent's
executor and on a simulated node, as the same experiment runs on both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import networkx as nx
import pytest

from shoal import (
    CyclePipeline,
    ExecutionGraph,
    ExecutionGraphError,
    Experiment,
    ExperimentStatus,
    Failure,
    LocalCluster,
    Node,
    Success,
    Task,
    TaskDispatcher,
)
from shoal.agent.execution_graph_walk import ExecutionGraphWalk
from shoal.agent.simulated import Swarm

REAL, SIMULATED = "graph-node", "graph-sim"


class Count(Task):
    """Returns how many times a task of its name ran before it (from previous_steps)."""

    def run(self) -> int:
        return len(self.previous_steps.get(self.name, []))


class Fail(Task):
    def run(self) -> None:
        raise RuntimeError(f"{self.name} failed on purpose")


class Saw(Task):
    """Returns the names of the steps that failed before it."""

    def run(self) -> list[str]:
        return sorted(
            name
            for name, outcomes in self.previous_steps.items()
            if any(not o.is_success for o in outcomes)
        )


class OnNode(TaskDispatcher):
    def dispatch(self, node: Node) -> Task:
        return Count(name=f"on-{node.name}")


def looping_graph() -> ExecutionGraph:
    """probe, then check, which fails; its failure branch runs recover, which
    leads back to probe along a weak edge used twice: three rounds in all.
    'after' follows check only on success, so never."""
    graph = ExecutionGraph()
    probe, check, recover, after = (
        Count(name="probe"),
        Fail(name="check"),
        Saw(name="recover"),
        Count(name="after"),
    )
    graph.graph.add_edge("root", probe)
    graph.graph.add_edge(probe, check)
    graph.graph.add_edge(check, recover, traverse_on="failure")
    graph.graph.add_edge(check, after)
    graph.graph.add_edge(recover, probe, type="weak", counter=2)
    return graph


def walk_to_the_end(graph: ExecutionGraph) -> ExecutionGraphWalk:
    """The walk with each task run inline, one at a time in the order made ready."""
    walk = ExecutionGraphWalk(graph)
    ready = walk.ready()
    while ready:
        task = ready.pop(0)
        try:
            task.previous_steps = walk.previous()
            outcome = Success(task.run())
        except RuntimeError as exc:
            outcome = Failure(str(exc))
        walk.finished(task, outcome)
        ready += walk.ready()
    return walk


# --- the rules, and the walk, piece by piece ------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda g, a, b: g.graph.add_node(a), "not reachable from 'root': 'a'"),
        (
            lambda g, a, b: g.graph.add_edges_from([("root", a), (a, b), (b, a)]),
            "the strong edges make a cycle ('a' -> 'b' -> 'a')",
        ),
        (
            lambda g, a, b: (g.graph.add_edge("root", a), g.graph.add_edge(b, a, type="weak")),
            "not reachable from 'root': 'b'",
        ),
        (
            lambda g, a, b: (
                g.graph.add_edges_from([("root", a), (a, b)]),
                g.graph.add_edge("root", "x", type="weak"),
                g.graph.add_edge("x", b),
            ),
            "not reachable from 'root' along strong edges (a weak edge cannot be a node's "
            "only way in): 'x'",
        ),
        (lambda g, a, b: g.graph.add_edge("root", a, counter=0), "counter must be a positive"),
        (lambda g, a, b: g.graph.add_edge("root", a, counter="2"), "got '2'"),
        (lambda g, a, b: g.graph.add_edge("root", a, type="soft"), "'strong' or 'weak'"),
        (
            lambda g, a, b: g.graph.add_edge("root", a, traverse_on="failure"),
            "edge 'root' -> 'a': traverse_on is for edges that leave a task",
        ),
        (
            lambda g, a, b: (g.graph.add_edge("root", a), g.graph.add_edge(a, b, traverse_on="ok")),
            "traverse_on must be 'success', 'failure' or 'any', got 'ok'",
        ),
    ],
)
def test_a_graph_that_breaks_a_rule_is_refused_naming_it(build, message: str) -> None:  # type: ignore[no-untyped-def]
    graph = ExecutionGraph()
    build(graph, Count(name="a"), Count(name="b"))
    with pytest.raises(ExecutionGraphError, match=re.escape(message)):
        graph.validate()
    # The mistake shows where it is made: in map(), before anything is sent.
    with pytest.raises(ExecutionGraphError, match=re.escape(message)):
        Experiment().map(graph, ["node-1"])
    graph.override_graph_validation = True
    assert ExecutionGraph.is_execution_graph_valid(graph)


def test_a_graph_without_root_or_not_a_digraph_is_refused() -> None:
    graph = ExecutionGraph()
    graph.graph.remove_node("root")
    with pytest.raises(ExecutionGraphError, match="no 'root' node"):
        graph.validate()
    graph.graph = nx.MultiDiGraph([("root", "a")])
    with pytest.raises(ExecutionGraphError, match=re.escape("must be a networkx.DiGraph")):
        graph.validate()
    with pytest.raises(TypeError, match="expects a Pipeline or an ExecutionGraph"):
        Experiment().map(graph.graph, ["node-1"])  # type: ignore[arg-type]


def test_the_walk_follows_loops_counters_and_failure_branches() -> None:
    graph = looping_graph()
    walk = walk_to_the_end(graph)
    assert [o.unwrap() for o in walk.results["probe"]] == [0, 1, 2]
    assert [o.is_success for o in walk.results["check"]] == [False] * 3
    assert [o.unwrap() for o in walk.results["recover"]] == [["check"]] * 3
    assert "after" not in walk.results
    assert not walk.ok and walk.failed and not walk.stopped and walk.stuck == []
    # The walk used up a copy of the counters: the graph can run again.
    recover, probe = graph.tasks[2], graph.tasks[0]
    assert graph.graph.edges[recover, probe]["counter"] == 2


def test_a_failure_with_no_branch_stops_the_walk_with_early_stopping_only() -> None:
    def graph(early_stopping: bool) -> ExecutionGraph:
        g = ExecutionGraph(early_stopping=early_stopping)
        g.graph.add_edge("root", first := Fail(name="first"))
        g.graph.add_edge(first, Count(name="second"))
        return g

    stopped = walk_to_the_end(graph(True))
    assert stopped.stopped and set(stopped.results) == {"first"} and not stopped.ok
    went_on = walk_to_the_end(graph(False))
    assert not went_on.stopped and set(went_on.results) == {"first", "second"}
    assert not went_on.ok  # a task failed: the run is a Failure all the same


def test_a_node_waiting_for_a_branch_not_taken_is_reported_stuck() -> None:
    graph = ExecutionGraph()
    first, fallback, join = Count(name="first"), Count(name="fallback"), Count(name="join")
    graph.graph.add_edge("root", first)
    graph.graph.add_edge(first, fallback, traverse_on="failure")
    graph.graph.add_edges_from([(first, join), (fallback, join)])
    walk = walk_to_the_end(graph)
    assert walk.stuck == ["'join' waits for 'fallback'"]
    assert not walk.ok and not walk.failed


def test_a_cycle_pipeline_runs_its_stages_cycles_times() -> None:
    a, b, c = Count(name="a"), Count(name="b"), Count(name="c")
    walk = walk_to_the_end(CyclePipeline(cycles=3, tasks=[a, [b, c]]))
    assert {name: [o.unwrap() for o in r] for name, r in walk.results.items()} == {
        "a": [0, 1, 2],
        "b": [0, 1, 2],
        "c": [0, 1, 2],
    }
    assert walk.ok
    for bad in (1, 0, "3", True):
        with pytest.raises(ValueError, match="cycles must be an integer of at least 2"):
            CyclePipeline(cycles=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a Task or a list of Tasks"):
        CyclePipeline().then("not a task")  # type: ignore[arg-type]


def test_dispatchers_in_a_graph_are_dispatched_per_node_and_copies_are_separate() -> None:
    graph = ExecutionGraph()
    graph.graph.add_edge("root", dispatcher := OnNode())
    graph.graph.add_edge(dispatcher, Count(name="last"))
    experiment = Experiment().map(graph, ["n1", "n2"])
    names = [[t.name for t in d.pipeline.tasks] for d in experiment]
    assert names == [["on-n1", "last"], ["on-n2", "last"]]
    assert graph.has_dispatchers()  # the user's graph is left as it was
    with pytest.raises(ExecutionGraphError, match="dispatchers were not dispatched"):
        ExecutionGraphWalk(graph)
    copied = graph.copy()
    copied.graph.add_edge("root", "extra")
    assert "extra" not in graph.graph and copied.name != graph.name


# --- on a real agent and on a simulated node ------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("execution-graph")
    with (
        LocalCluster([REAL], workdir=workdir) as c,
        Swarm(c.endpoint, c.agent_token, [SIMULATED]) as swarm,
    ):
        swarm.wait_online(timeout=60)
        c.client().wait_for_nodes([REAL, SIMULATED], 60)
        yield c


def run_everywhere(cluster: LocalCluster, graph: ExecutionGraph, name: str) -> dict:
    client = cluster.client()
    client.prepare_experiment(Experiment().map(graph, [REAL, SIMULATED]), name)
    ready = client.wait(name, until="ready", timeout=60)
    assert ready.status is ExperimentStatus.READY, ready
    client.start_execution(name)
    info = client.wait(name, timeout=60)
    assert info.status is ExperimentStatus.FINISHED, info
    return {report.node.name: report.result for report in info.execution_result}


@pytest.mark.timeout(120)
def test_a_looping_graph_with_a_failure_branch_runs_on_both_kinds_of_node(
    cluster: LocalCluster,
) -> None:
    results = run_everywhere(cluster, looping_graph(), "looping-graph")
    for node in (REAL, SIMULATED):
        result, _logs = results[node]
        assert isinstance(result, Failure), (node, result)  # check failed: the run did
        steps = result.failure()
        assert [s.unwrap() for s in steps["probe"]] == [0, 1, 2], node
        assert len(steps["check"]) == 3, node
        assert all("check failed on purpose" in str(s.failure()) for s in steps["check"]), node
        assert [s.unwrap() for s in steps["recover"]] == [["check"]] * 3, node
        assert "after" not in steps, node


@pytest.mark.timeout(120)
def test_a_cycle_pipeline_runs_on_both_kinds_of_node(cluster: LocalCluster) -> None:
    pipeline = CyclePipeline(cycles=3).then(Count(name="a")).then([Count(name="b"), OnNode()])
    results = run_everywhere(cluster, pipeline, "cycle-pipeline")
    for node in (REAL, SIMULATED):
        result, _logs = results[node]
        assert isinstance(result, Success), (node, result)
        counts = {name: [s.unwrap() for s in steps] for name, steps in result.unwrap().items()}
        assert counts == {"a": [0, 1, 2], "b": [0, 1, 2], f"on-{node}": [0, 1, 2]}, node


@pytest.mark.timeout(120)
def test_a_graph_stuck_on_a_branch_not_taken_fails_and_says_why(cluster: LocalCluster) -> None:
    graph = ExecutionGraph()
    first, fallback, join = Count(name="first"), Count(name="fallback"), Count(name="join")
    graph.graph.add_edge("root", first)
    graph.graph.add_edge(first, fallback, traverse_on="failure")
    graph.graph.add_edges_from([(first, join), (fallback, join)])
    results = run_everywhere(cluster, graph, "stuck-graph")
    for node in (REAL, SIMULATED):
        result, _logs = results[node]
        assert isinstance(result, Failure), (node, result)
        assert set(result.failure()) == {"first"}, node
    lines = [entry["line"] for entry in cluster.client().get_logs("stuck-graph")]
    assert "shoal: the execution graph stopped with 'join' waits for 'fallback'" in lines
