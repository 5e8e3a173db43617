"""Inputs that move ahead of their task, while it still waits for others.

Without this, a task that reads many objects made on other nodes starts moving
them only when its last input is finished and it is placed: every transfer is
then on the critical path, while the nodes sat idle before. Instead, once one
of its inputs that lives on a node (not inline) finishes, the waiting task gets
a *plan*: the node that holds, or is being sent, most of its finished input
bytes. That node is told to fetch each finished input it lacks as soon as the
input is finished (:class:`~shoal.protocol.graph_messages.GraphPrefetch`);
once it answers that it holds one, it is one more holder of that object (and
is freed with it). When the task is ready it is placed as any task, where an
input on its way to a node counts as held there, so it goes to its plan unless
that node is full or gone, and only its last input's transfer is left.

Nothing here decides correctness: a task placed elsewhere fetches what it lacks
there, as without a plan; on its plan node an input still on its way is not
fetched twice (the agent shares one fetch per object). Bounded: a node has at
most :data:`PREFETCH_IN_FLIGHT` bytes on their way to it at once (its agent
also refuses what its disk cannot hold), and at most :data:`MAX_PLANS` tasks
have a plan.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from shoal.controller.graph_objects import ObjectKeeping
from shoal.controller.graph_state import GNode, GObject, GSession, GTask, Plan
from shoal.protocol.graph_messages import GraphFree, GraphInput, GraphPrefetch, GraphPrefetched

log = logging.getLogger("shoal.controller.graph")

# Bytes on their way to one node ahead of their tasks, at most: what is past it
# moves when its task runs, as without prefetch.
PREFETCH_IN_FLIGHT = 512 * 1024 * 1024
# Waiting tasks with a plan, at most (a plan is a few small dicts).
MAX_PLANS = 10_000


class Prefetching(ObjectKeeping):
    """Plans of waiting tasks, and the inputs sent ahead to them."""

    _ahead: defaultdict[tuple[str, int], list[GraphInput]]

    def _plan_inputs(self, task: GTask, obj: GObject) -> None:
        """``obj``, an input of the waiting ``task``, finished on a node: send it to
        the task's plan node (all its finished inputs, when the plan moves)."""
        plan = self._plans.get(task)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:
                return
            plan = self._plans[task] = Plan()
            # Its first input that lives on a node; others may have finished before
            # (inline ones, or all of them for a task submitted later).
            done = [o for o, _ in task.inputs if o.done and o.data is None]
        else:
            done = [obj]
        for o in done:
            for holder in o.holders:
                plan.local[holder] = plan.local.get(holder, 0) + o.size
        links = self.registry.links
        best: GNode | None = None
        best_score: tuple[int, bool] | None = None
        for node in self.nodes.values():
            if task.cpus > node.capacity or node.name not in links:
                continue
            if not self.registry.is_online(node.name):
                continue
            score = (plan.local.get(node.name, 0), node.name == plan.node)
            if best_score is None or score > best_score:
                best, best_score = node, score
        if best is None:
            return
        if best.name != plan.node:
            # A new plan: everything finished so far goes there (what went to
            # the old one is freed with its object).
            plan.node = best.name
            done = [o for o, _ in task.inputs if o.done and o.data is None]
        else:
            done = [obj]
        for o in done:
            self._send_ahead(o, best, plan)

    def _send_ahead(self, obj: GObject, node: GNode, plan: Plan) -> None:
        key = (obj.session.id, obj.id)
        if obj.freed or node.name in obj.holders or key in node.prefetching:
            return
        if node.prefetching_bytes + obj.size > PREFETCH_IN_FLIGHT:
            return
        holders = self._holders(obj, node.name)
        if not holders:
            return
        node.prefetching[key] = obj.size
        node.prefetching_bytes += obj.size
        plan.local[node.name] = plan.local.get(node.name, 0) + obj.size
        obj.session.nodes.add(node.name)  # its end drops the copy there too
        self._ahead[node.name, obj.session.id].append(
            GraphInput(id=obj.id, data_type=obj.data_type, size=obj.size, holders=holders)
        )

    def _flush_ahead(self) -> None:
        for (name, session_id), inputs in self._ahead.items():
            session = self.sessions.get(session_id)
            if session is not None:
                self._send(name, GraphPrefetch(session_id, inputs, owner=session.login))
        self._ahead.clear()

    def _forget_plans(self, session: GSession) -> None:
        """The session ended: its plans go, and its inputs on their way stop counting."""
        for node in self.nodes.values():
            if node.prefetching:
                for key in [k for k in node.prefetching if k[0] == session.id]:
                    node.prefetching_bytes -= node.prefetching.pop(key)
        if self._plans:
            for task in [t for t in self._plans if t.session is session]:
                del self._plans[task]

    def _forget_prefetching(self, node: GNode) -> None:
        """The node (re)connected: what it was fetching may never be answered."""
        node.prefetching.clear()
        node.prefetching_bytes = 0

    def on_prefetched(self, node_name: str, message: GraphPrefetched) -> None:
        """A node answered a :class:`GraphPrefetch` of one object."""
        node = self.nodes.get(node_name)
        if node is None:
            return
        key = (message.session, message.object)
        size = node.prefetching.pop(key, None)
        if size is None:
            return  # not asked of it (or before it reconnected): nothing to believe
        node.prefetching_bytes -= size
        if message.error:
            log.info(
                "node %r did not fetch object (%d, %d) ahead: %s",
                node_name,
                message.session,
                message.object,
                message.error,
            )
            return
        session = self.sessions.get(message.session)
        obj = session.objects.get(message.object) if session is not None else None
        if session is None or obj is None or session.error is not None:
            return  # its end sent the node a GraphCancel, which drops the copy
        if obj.freed:
            self._send(node_name, GraphFree([key]))
            return
        obj.holders.add(node_name)
        if session.record_id is not None:
            self.marks.objects.add(obj)  # its placement now names this node too
