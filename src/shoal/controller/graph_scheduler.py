"""The graph scheduler: which node runs each ready task, and what comes back.

Ready tasks go where most of their input data already is, within each node's
cpus, with a queue ahead on nodes while tasks are short (see
:meth:`~shoal.controller.graph_state.GNode.window`). Results free the cpus,
finish the outputs and make the next tasks ready. A lost node fails the
sessions whose work or only copy of data it held; other sessions go on.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator

from shoal.controller.graph_prefetch import Prefetching
from shoal.controller.graph_state import ASSIGNED, FAILED, FINISHED, READY, GNode, GTask
from shoal.protocol.graph_messages import (
    INLINE_LIMIT,
    GraphDone,
    GraphInput,
    GraphOutput,
    GraphRun,
    GraphTask,
)

log = logging.getLogger("shoal.controller.graph")


class Scheduling(Prefetching):
    """Nodes as the scheduler sees them; placing ready tasks; taking results."""

    def node_hello(self, name: str, cpus: int, data_address: str) -> None:
        """An agent (re)connected: it can take graph tasks; resend what it may have missed."""
        node = self.nodes.get(name)
        if node is None:
            self.nodes[name] = GNode(name, max(1, cpus), data_address)
        else:
            node.capacity = max(1, cpus)
            node.data_address = data_address
            self._forget_prefetching(node)
            # A restarted agent has none of the functions; one that only
            # reconnected may have missed the message that carried them.
            node.functions.clear()
            # A task sent while the connection dropped may never have arrived;
            # the agent ignores the ones it already has.
            functions: dict[str, bytes] = {}
            resend = [self._run_message(t, node, functions) for t in node.assigned.values()]
            if resend:
                self._send(name, GraphRun(resend, functions))
        self._schedule()

    def node_back(self, name: str) -> None:
        """A suspect node was heard again: it takes new tasks again."""
        if name in self.nodes:
            self._schedule()

    def node_lost(self, name: str, reason: str) -> None:
        """The node is gone: its running tasks and the data only it held are lost."""
        node = self.nodes.pop(name, None)
        if node is None:
            return
        for task in list(node.assigned.values()):
            if task.session.error is None:
                self._fail(task.session, f"{reason}, while it ran {task.describe()}")
        for session in list(self.sessions.values()):
            if session.error is not None or name not in session.nodes:
                continue
            session.nodes.discard(name)
            for obj in session.objects.values():
                if name not in obj.holders:
                    continue
                obj.holders.discard(name)
                if not obj.holders and obj.data is None and not obj.freed and obj.needed():
                    label = f" {obj.label!r}" if obj.label else ""
                    self._fail(
                        session,
                        f"{reason}; it held object{label} ({session.id}, {obj.id}), "
                        "which is still needed",
                    )
                    break
        self._schedule()

    def running(self) -> Iterator[GTask]:
        """The tasks assigned to nodes now (running, or queued there)."""
        for node in self.nodes.values():
            yield from node.assigned.values()

    def on_done(self, node_name: str, message: GraphDone) -> None:
        node = self.nodes.get(node_name)
        now = time.time()
        marks = self.marks
        for result in message.results:
            session = self.sessions.get(result.session)
            task = session.tasks.get(result.id) if session is not None else None
            if task is not None and task.node is not None and task.node != node_name:
                # Believed only from the node the task was placed on; nothing is freed
                # on the sender either: what it claims to hold is not its to free.
                log.warning(
                    "dropped a result of graph task (%d, %d) from node %r: "
                    "it was placed on node %r",
                    result.session,
                    result.id,
                    node_name,
                    task.node,
                )
                continue
            if (
                node is None
                or task is None
                or node.assigned.pop((result.session, result.id), None) is None
            ):
                # A task of a closed or failed session, or a duplicate: drop its data.
                stored = [(result.session, o.id) for o in result.outputs if o.data is None]
                if stored:
                    self._frees[node_name].extend(stored)
                continue
            node.used -= task.cpus
            duration = result.info.get("duration")
            if isinstance(duration, int | float):
                self.mean_duration = 0.8 * self.mean_duration + 0.2 * float(duration)
            # The decoded dict itself, not a copy (a million tasks keep theirs);
            # governor and node are added where it is read (task_info).
            info = result.info
            task.config = b""  # it ran: what it was is no longer needed here
            task.finished_at = now
            if task.session.record_id is not None:
                marks.tasks.add(task)
                marks.objects.update(task.outputs)
            if result.error:
                info["error"] = result.error
                task.info = info
                task.move(FAILED)
                self.tasks_ended[FAILED] += 1
                for obj in task.outputs:
                    obj.state = FAILED
                    obj.info = {"error": f"{task.describe()} failed"}
                self._wake(task)
                self._fail(
                    task.session,
                    f"{task.describe()} failed on node {node_name!r}: {result.error}",
                    task=task.id,
                    debug=str(info.get("debug", "")),
                )
                continue
            task.info = info
            task.move(FINISHED)
            self.tasks_ended[FINISHED] += 1
            if task.outputs:
                outputs = {o.id: o for o in result.outputs}
                for obj in task.outputs:
                    out = outputs.get(obj.id)
                    if out is None:
                        continue
                    self._finish_object(obj, out.size, out.content_type, out.data, node_name)
            self._wake(task)
            for obj, _label in task.inputs:
                obj.unfinished_consumers -= 1
                self._maybe_free(obj)
            for obj in task.outputs:
                self._maybe_free(obj)
        self._flush_frees()
        self._flush_ahead()
        self._schedule()

    def _run_message(self, task: GTask, node: GNode, functions: dict[str, bytes]) -> GraphTask:
        """The task as ``node`` gets it; its function goes into ``functions`` (to
        travel in the same GraphRun) if this connection to the node has not had it."""
        function = task.function
        if function and function not in node.functions:
            node.functions.add(function)
            functions[function] = task.session.functions[function]
        inputs = []
        reader = task.node or ""
        for obj, label in task.inputs:
            inline = obj.data is not None and obj.size <= INLINE_LIMIT
            inputs.append(
                GraphInput(
                    id=obj.id,
                    label=label,
                    data_type=obj.data_type,
                    content_type=obj.info.get("content_type", obj.content_type),
                    size=obj.size,
                    data=obj.data if inline else None,
                    holders=[] if inline else self._holders(obj, reader),
                    user=obj.user,
                )
            )
        return GraphTask(
            session=task.session.id,
            id=task.id,
            task_type=task.task_type,
            config=task.config,
            inputs=inputs,
            outputs=[GraphOutput(o.id, o.label, o.data_type, o.content_type) for o in task.outputs],
            name=task.name,
            cpus=task.cpus,
            user=task.user,
            owner=task.session.login,
            function=function,
        )

    def _place(self, task: GTask, online: list[GNode], now: float) -> GNode | None:
        """The node for a ready task, or None while every node is full.

        A node with free cpus beats one where the task would queue behind others
        (a queue ahead only pays for short tasks, and durations are not known in
        advance); among those, the node that holds most of the input bytes (or
        has them on their way, sent ahead of the task: graph_prefetch), then the
        least loaded.
        """
        best: GNode | None = None
        best_score: tuple[bool, int, float] | None = None
        for node in online:
            if task.cpus > node.capacity:
                continue
            free = node.used + task.cpus <= node.capacity or node.used == 0
            if not free and node.used + task.cpus > node.window(now, self.mean_duration):
                continue
            local = sum(obj.size for obj, _ in task.inputs if node.name in obj.holders)
            if node.prefetching:
                ahead = node.prefetching
                sid = task.session.id
                local += sum(obj.size for obj, _ in task.inputs if (sid, obj.id) in ahead)
            score = (free, local, -node.used / node.capacity)
            if best_score is None or score > best_score:
                best, best_score = node, score
        return best

    def _schedule(self) -> None:
        if not self.ready:
            return  # nothing to place: not worth a pass over every node (each hello calls this)
        runs: dict[str, list[GraphTask]] = defaultdict(list)
        functions: dict[str, dict[str, bytes]] = defaultdict(dict)
        now = time.monotonic()
        wall = time.time()
        linked = [n for n in self.nodes.values() if n.name in self.registry.links]
        largest = max((n.capacity for n in linked), default=0)
        # A suspect node (silent past the heartbeat timeout) gets no new work until
        # it is heard again; its size still counts, as it may come back.
        online = [n for n in linked if self.registry.is_online(n.name)]
        while self.ready:
            task = self.ready[0]
            if task.state != READY or task.session.error is not None or task.session.closed:
                self.ready.popleft()
                continue
            if linked and task.cpus > largest:
                self.ready.popleft()
                task.move(FAILED)
                self.tasks_ended[FAILED] += 1
                task.info = {"error": "no node has enough cpus"}
                if task.session.record_id is not None:
                    self.marks.tasks.add(task)
                self._wake(task)
                self._fail(
                    task.session,
                    f"{task.describe()} needs {task.cpus} cpus, but the largest node has {largest}",
                    task=task.id,
                )
                continue
            node = self._place(task, online, now)
            if node is None:
                break
            self.ready.popleft()
            self.placement.observe(now - task.ready_at)
            task.move(ASSIGNED)
            task.assigned_at = now
            task.started_at = wall
            task.node = node.name
            node.used += task.cpus
            node.assigned[(task.session.id, task.id)] = task
            task.session.nodes.add(node.name)
            runs[node.name].append(self._run_message(task, node, functions[node.name]))
        for name, tasks in runs.items():
            self._send(name, GraphRun(tasks, functions[name]))
