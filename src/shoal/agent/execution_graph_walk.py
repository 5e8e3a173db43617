"""The walk of a netUnicorn execution graph, as netUnicorn's executor walks it,
kept apart from how tasks run: the executor runs tasks in threads, a
simulated node inline, and both drive this one state machine.

The rules (netUnicorn's): the walk starts at ``"root"``. A node waits until
every predecessor joined to it by a strong edge has finished at least once,
then runs (a task) or is passed (a synchronisation point). When a task ends,
each edge out of it is followed or not by its ``traverse_on`` and the task's
outcome; a followed edge with a ``counter`` uses up one, and goes when none is
left. A failed task with ``early_stopping`` and no edge followed ends the walk.
A node's results are kept by task name, one per run, in order.

One difference: a task asked for again while it runs runs once more after it
ends, however often it was asked meanwhile (netUnicorn's executor started a
second copy at once, which took the first one's place in its bookkeeping).
"""

from __future__ import annotations

from typing import Any

from shoal.model.execution_graph import ROOT, ExecutionGraph, ExecutionGraphError, _name
from shoal.model.pipeline import Task, TaskDispatcher
from shoal.model.result import Result


class ExecutionGraphWalk:
    """One walk of ``graph`` (validated here; its counters are used up on a copy).

    ``ready()`` gives the tasks to start now; report each task's end to
    ``finished()``, then ask ``ready()`` again. The walk is over when nothing
    runs and ``ready()`` gives nothing: ``ok`` says whether every task
    succeeded and the walk went to its end, ``stuck`` names nodes left waiting
    for a predecessor that never ran (netUnicorn's "deadlock").
    """

    def __init__(self, graph: ExecutionGraph) -> None:
        graph.validate()
        dispatchers = [n for n in graph.graph.nodes if isinstance(n, TaskDispatcher)]
        if dispatchers:
            names = ", ".join(_name(n) for n in dispatchers)
            raise ExecutionGraphError(f"task dispatchers were not dispatched for a node: {names}")
        self._graph = graph.graph.copy()
        self._early_stopping = graph.early_stopping
        self._waiting: dict[Any, None] = {ROOT: None}  # a set that keeps its order
        self._finished: set[Any] = set()
        self._running: set[Task] = set()
        self.results: dict[str, list[Result]] = {}
        self.failed = False  # some task failed
        self.stopped = False  # a failure ended the walk early

    def ready(self) -> list[Task]:
        """The tasks that may start now (they count as running from here);
        synchronisation points that are ready are passed on the way."""
        started: list[Task] = []
        moved = not self.stopped
        while moved:
            moved = False
            for node in list(self._waiting):
                if node in self._running or not self._prerequisites_met(node):
                    # A task asked for again while it runs goes again once it ends.
                    continue
                del self._waiting[node]
                moved = True
                if isinstance(node, Task):
                    self._running.add(node)
                    started.append(node)
                else:
                    self._finished.add(node)
                    self._follow(node, None)
        return started

    def previous(self) -> dict[str, list[Result]]:
        """What a task starting now sees as ``previous_steps``: the results so far."""
        return {name: list(outcomes) for name, outcomes in self.results.items()}

    def finished(self, task: Task, outcome: Result) -> None:
        """``task`` ended with ``outcome``: record it and follow its edges."""
        self._running.discard(task)
        self._finished.add(task)
        self.results.setdefault(task.name, []).append(outcome)
        if not outcome.is_success:
            self.failed = True
        if not self._follow(task, outcome.is_success):
            self.stopped = True

    @property
    def running(self) -> bool:
        return bool(self._running)

    @property
    def stuck(self) -> list[str]:
        """Nodes still waiting once the walk is over, each with what it waits for
        (empty after an early stop, which leaves them on purpose)."""
        if self.stopped or self._running:
            return []
        finished = self._finished
        return [
            f"{_name(node)} waits for "
            + ", ".join(_name(p) for p in self._strong_predecessors(node) if p not in finished)
            for node in self._waiting
        ]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stopped and not self.stuck

    def _strong_predecessors(self, node: Any) -> list[Any]:
        edges = self._graph.pred[node]
        return [p for p, data in edges.items() if data.get("type", "strong") != "weak"]

    def _prerequisites_met(self, node: Any) -> bool:
        return all(p in self._finished for p in self._strong_predecessors(node))

    def _follow(self, node: Any, succeeded: bool | None) -> bool:
        """Put the successors of ``node`` whose edges are followed in the waiting
        set; False if none was and the walk must stop (a failure, early stop)."""
        default = "success" if self._early_stopping else "any"
        followed = False
        for successor, data in list(self._graph.succ[node].items()):
            traverse_on = data.get("traverse_on", default)
            if not (
                succeeded is None or traverse_on == "any" or (traverse_on == "success") == succeeded
            ):
                continue
            followed = True
            self._waiting[successor] = None
            counter = data.get("counter")
            if counter is not None:
                if counter <= 1:
                    self._graph.remove_edge(node, successor)
                else:
                    data["counter"] = counter - 1
        return followed or succeeded is not False or not self._early_stopping


__all__ = ["ExecutionGraphWalk"]
