"""netUnicorn's execution graph: tasks and synchronisation points joined by edges
that say what runs after what, with loops, counters and failure branches.

A :class:`~shoal.model.pipeline.Pipeline` covers the common case (stages in a
row); an :class:`ExecutionGraph` is for what a list of stages cannot say. Its
``graph`` is a ``networkx.DiGraph`` that always has the node ``"root"``, where
the walk starts. Nodes that are :class:`Task`\\ s run; any other node (a string,
a number) is a synchronisation point that is passed once its predecessors are.

Edges may carry, as netUnicorn's do:

- ``type``: ``"strong"`` (the default: the edge is also a prerequisite) or
  ``"weak"`` (only the way on; a loop back must be weak, or it waits for itself);
- ``counter``: how many times the edge is followed (unlimited without it);
- ``traverse_on``: ``"success"``, ``"failure"`` or ``"any"``, whether it is
  followed after its task succeeded, failed, or either. Without it, edges are
  followed on success when ``early_stopping`` is set, else always.

The node runs the walk: ``shoal.agent.execution_graph_walk``.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Self
from uuid import uuid4

from shoal.model.environment import EnvironmentDefinition
from shoal.model.pipeline import Task, TaskDispatcher, TaskElement, Workload, _describe, _dispatch

if TYPE_CHECKING:
    import networkx as nx

    from shoal.model.node import Node

ROOT = "root"
TRAVERSE_ON = ("success", "failure", "any")


class ExecutionGraphError(ValueError):
    """The graph breaks one of the execution graph's rules (named in the message)."""


class ExecutionGraph(Workload):
    """Tasks and synchronisation points in a ``networkx.DiGraph`` (``graph``),
    walked from ``"root"`` along its edges; see the module's text for the
    edges' attributes. ``early_stopping``: a failed task ends the walk unless
    an edge from it is followed on failure. The other arguments are
    :class:`~shoal.model.pipeline.Workload`'s.
    """

    def __init__(
        self,
        early_stopping: bool = True,
        report_results: bool = True,
        environment_definition: EnvironmentDefinition | None = None,
        name: str | None = None,
    ) -> None:
        # networkx is imported here, not with the module: an executor that runs
        # a plain Pipeline never pays for it (unpickling a graph imports it).
        import networkx as nx

        super().__init__(early_stopping, report_results, environment_definition, name)
        self.graph: nx.DiGraph = nx.DiGraph()
        self.graph.add_node(ROOT)
        # netUnicorn's switch for graphs its rules reject on purpose.
        self.override_graph_validation = False

    @property
    def tasks(self) -> list[TaskElement]:
        """The tasks (and dispatchers not dispatched yet), in the order added."""
        return [node for node in self.graph.nodes if isinstance(node, Task | TaskDispatcher)]

    def dispatched(self, node: Node) -> Self:
        """This graph as it runs on ``node``: each dispatcher replaced by the task
        its ``dispatch(node)`` returns, edges kept (a copy; itself without
        dispatchers)."""
        if not self.has_dispatchers():
            return self
        import networkx as nx

        mapping = {
            element: _dispatch(element, node)
            for element in self.graph.nodes
            if isinstance(element, TaskDispatcher)
        }
        copied = copy.copy(self)
        copied.graph = nx.relabel_nodes(self.graph, mapping, copy=True)
        return copied

    def copy(self) -> Self:
        """A new graph (with a new name) with the same settings, nodes and edges;
        tasks are shared."""
        copied = copy.copy(self)
        copied.name = str(uuid4())
        return copied

    # --- its rules ------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`ExecutionGraphError` naming the first rule the graph
        breaks: a ``DiGraph`` with ``"root"``, every node reachable from it
        (also along strong edges alone), no cycle of strong edges, positive
        integer counters, ``traverse_on`` one of success/failure/any and only
        on edges that leave a task."""
        if self.override_graph_validation:
            return
        import networkx as nx

        graph = self.graph
        if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
            raise ExecutionGraphError(
                f"an execution graph's graph must be a networkx.DiGraph, got {_describe(graph)}"
            )
        if ROOT not in graph:
            raise ExecutionGraphError(f"the execution graph has no {ROOT!r} node to start from")
        _reachable(graph, "")
        strong = nx.subgraph_view(
            graph, filter_edge=lambda u, v: graph.edges[u, v].get("type", "strong") != "weak"
        )
        if not nx.is_directed_acyclic_graph(strong):
            edges = nx.find_cycle(strong)
            cycle = " -> ".join(_name(u) for u, _ in [*edges, edges[0]])
            raise ExecutionGraphError(
                f"the strong edges make a cycle ({cycle}), which would wait for itself; "
                "make the edge back a weak one: add_edge(a, b, type='weak')"
            )
        _reachable(strong, " along strong edges (a weak edge cannot be a node's only way in)")
        for u, v, data in graph.edges(data=True):
            where = f"edge {_name(u)} -> {_name(v)}"
            kind = data.get("type", "strong")
            if kind not in ("strong", "weak"):
                raise ExecutionGraphError(f"{where}: type must be 'strong' or 'weak', got {kind!r}")
            if "counter" in data:
                counter = data["counter"]
                if isinstance(counter, bool) or not isinstance(counter, int) or counter <= 0:
                    raise ExecutionGraphError(
                        f"{where}: counter must be a positive integer, got {counter!r}"
                    )
            if "traverse_on" in data:
                if data["traverse_on"] not in TRAVERSE_ON:
                    raise ExecutionGraphError(
                        f"{where}: traverse_on must be 'success', 'failure' or 'any', "
                        f"got {data['traverse_on']!r}"
                    )
                if not isinstance(u, Task | TaskDispatcher):
                    raise ExecutionGraphError(
                        f"{where}: traverse_on is for edges that leave a task; "
                        f"{_name(u)} is a synchronisation point"
                    )

    @staticmethod
    def is_execution_graph_valid(obj: ExecutionGraph) -> bool:
        """netUnicorn's spelling of :meth:`validate`: True, or the error."""
        if not isinstance(obj, ExecutionGraph):
            raise ExecutionGraphError(f"expected an ExecutionGraph, got {_describe(obj)}")
        obj.validate()
        return True

    def draw(self, layout: Any = None) -> None:
        """Draw the graph with networkx and matplotlib (which must be installed),
        each edge labelled with its attributes."""
        import networkx as nx

        positions = (layout or nx.shell_layout)(self.graph)
        nx.draw(self.graph, positions)
        nx.draw_networkx_labels(self.graph, positions, labels={n: _name(n) for n in self.graph})
        labels = {
            (u, v): ", ".join(f"{key}={value}" for key, value in data.items())
            for u, v, data in self.graph.edges(data=True)
        }
        nx.draw_networkx_edge_labels(self.graph, positions, edge_labels=labels)

    def __copy__(self) -> Self:
        # As netUnicorn's: the copy's edges are its own (a walk uses up counters),
        # its tasks the same objects.
        copied = type(self).__new__(type(self))
        copied.__dict__.update(self.__dict__)
        copied.graph = self.graph.copy()
        return copied

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name}: {self.graph.number_of_nodes()} nodes, "
            f"{self.graph.number_of_edges()} edges>"
        )


class CyclePipeline(ExecutionGraph):
    """A pipeline whose stages run again from the first once the last is done:
    ``cycles`` times in all (None: until a task fails with ``early_stopping``,
    or for ever). Built as netUnicorn builds it, with a weak edge back to root.
    """

    def __init__(
        self,
        cycles: int | None = None,
        tasks: Iterable[TaskElement | Collection[TaskElement]] = (),
        early_stopping: bool = True,
        report_results: bool = True,
        environment_definition: EnvironmentDefinition | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(early_stopping, report_results, environment_definition, name)
        self.edge_params: dict[str, Any] = {"type": "weak"}
        if cycles is not None:
            if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 2:
                raise ValueError(f"cycles must be an integer of at least 2, got {cycles!r}")
            # The first round comes from root; the edge back brings the others.
            self.edge_params["counter"] = cycles - 1
        self.last_stage: str | int = ROOT
        self.graph.add_edge(ROOT, ROOT, **self.edge_params)
        for element in tasks:
            self.then(element)

    def then(self, tasks: TaskElement | Collection[TaskElement]) -> Self:
        """Append a stage: a task, or a list of tasks run in parallel."""
        stage = (
            [tasks] if isinstance(tasks, Task | TaskDispatcher) else _stage(tasks, self.last_stage)
        )
        previous = self.last_stage
        self.graph.remove_edge(previous, ROOT)
        following = previous + 1 if isinstance(previous, int) else 1
        self.graph.add_edges_from((previous, task) for task in stage)
        self.graph.add_edges_from((task, following) for task in stage)
        self.last_stage = following
        self.graph.add_edge(following, ROOT, **self.edge_params)
        return self


def _stage(tasks: object, after: str | int) -> list[TaskElement]:
    where = f"the stage after {after!r}"
    if not isinstance(tasks, Collection) or isinstance(tasks, str | bytes):
        raise TypeError(f"{where}: expected a Task or a list of Tasks, got {_describe(tasks)}")
    stage = list(tasks)
    if not stage:
        raise ValueError(f"{where}: a stage needs at least one Task")
    for position, task in enumerate(stage):
        if not isinstance(task, Task | TaskDispatcher):
            raise TypeError(f"{where}, position {position}: expected a Task, got {_describe(task)}")
    return stage


def _name(node: object) -> str:
    return repr(node.name) if isinstance(node, Task | TaskDispatcher) else repr(node)


def _reachable(graph: nx.DiGraph, how: str) -> None:
    import networkx as nx

    unreached = set(graph.nodes) - {ROOT} - nx.descendants(graph, ROOT)
    if unreached:
        names = ", ".join(sorted(_name(node) for node in unreached))
        raise ExecutionGraphError(f"not reachable from {ROOT!r}{how}: {names}")


__all__ = ["CyclePipeline", "ExecutionGraph", "ExecutionGraphError"]
