"""Flag calls that executors send through their agent's WebSocket.

An executor's flag operations travel over the connection its agent already
has, instead of a new HTTP request each. The agent names the deployment the
call came from; the call is believed only if that deployment is live and placed
on the node that relayed it (what the deployment's executor token would allow:
its own experiment's flags, while it runs).

A call may arrive twice when an agent reconnects and sends again what was not
answered: answers are remembered for a while, so a repeated ``add`` is answered
again rather than applied again.

A call costs no task of its own: it is checked and queued (or answered from
memory) as its frame is read, and answered from the flag writer's callback once
durable. Only the first call on a flag not in memory yet waits for a store read.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from fastapi import HTTPException

from shoal.controller.experiments import TERMINAL_DEPLOYMENT, ExperimentService
from shoal.controller.flags import INT_MAX, INT_MIN, Flag, FlagRangeError, FlagService, State
from shoal.controller.registry import NodeRegistry
from shoal.protocol.flag_messages import FlagAnswer, FlagCall
from shoal.store.faults import StoreError

log = logging.getLogger("shoal.controller.flags")

REMEMBERED = 100_000  # answered calls kept to recognise a call sent again
MAX_FLAG_NAME = 255  # what the store's column holds
CallKey = tuple[str, str, int]  # relaying node, deployment, call id


class ExecutorFlagCalls:
    """Serves executors' flag calls; a call needing a store read first runs in a
    task of the service's own TaskGroup."""

    def __init__(
        self,
        flags: FlagService,
        experiments: ExperimentService,
        registry: NodeRegistry,
        max_wait: float,
    ) -> None:
        self.flags = flags
        self.experiments = experiments
        self.registry = registry
        self.max_wait = max_wait
        self._tg: asyncio.TaskGroup | None = None
        # Keyed by (relaying node, deployment, call id): a repeat is recognised
        # only from the node that sent the call, never from another one.
        self._answered: OrderedDict[CallKey, FlagAnswer] = OrderedDict()
        self._running: set[CallKey] = set()

    async def run(self) -> None:
        """Hold the TaskGroup the calls run in, until cancelled (with them)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                await asyncio.Event().wait()
            finally:
                self._tg = None

    def submit(self, node: str, call: FlagCall) -> None:
        """Take a call relayed by the agent on ``node``; its answer goes back to that node."""
        key = (node, call.deployment, call.id)
        answered = self._answered.get(key)
        if answered is not None:
            self._reply(node, answered)
            return
        if key in self._running or self._tg is None:
            return  # the first copy is answered when done
        dep = self.experiments.deployments.get(call.deployment)
        if dep is None or dep.node != node or dep.state in TERMINAL_DEPLOYMENT:
            self._reply(
                node, _failed(call, 403, "this executor's deployment is not running on this node")
            )
            return
        refused = _invalid(call)
        if refused:
            self._reply(node, _failed(call, 400, refused))
            return
        self._running.add(key)
        flag = self.flags.loaded(dep.experiment_id, call.flag)
        if flag is None:
            self._tg.create_task(self._load_then_serve(node, call, key, dep.experiment_id))
        else:
            self._serve(node, call, key, dep.experiment_id, flag)

    async def _load_then_serve(
        self, node: str, call: FlagCall, key: CallKey, experiment: str
    ) -> None:
        try:
            flag = await self.flags.load(experiment, call.flag)
        except Exception as exc:
            self._finish(node, call, key, exc)
            return
        self._serve(node, call, key, experiment, flag)

    def _serve(self, node: str, call: FlagCall, key: CallKey, experiment: str, flag: Flag) -> None:
        op = call.op
        if op == "add":
            self.flags.change(
                experiment,
                call.flag,
                flag,
                None,
                call.delta,
                lambda outcome: self._finish(node, call, key, outcome),
            )
        elif op == "set":
            self.flags.change(
                experiment,
                call.flag,
                flag,
                (call.text_value, call.int_value),
                None,
                lambda outcome: self._finish(node, call, key, outcome),
            )
        elif op == "get":
            self.flags.ops["get"] += 1
            if flag.values is None:
                self._finish(node, call, key, _failed(call, 404, f"flag {call.flag!r} is not set"))
            else:
                self._finish(node, call, key, (flag.values, flag.version))
        elif op == "wait":
            timeout = max(0.0, min(call.timeout, self.max_wait))

            def woken(outcome: State | None) -> None:
                if outcome is None:  # timed out: the flag as it is now
                    self._finish(node, call, key, _state(call, (flag.values, flag.version)))
                else:
                    answer = _state(call, outcome)
                    answer.matched = True
                    self._finish(node, call, key, answer)

            self.flags.watch(flag, (call.text_value, call.int_value), call.after, timeout, woken)
        else:
            self._finish(node, call, key, _failed(call, 400, f"unknown flag operation {op!r}"))

    def _finish(
        self, node: str, call: FlagCall, key: CallKey, outcome: State | FlagAnswer | BaseException
    ) -> None:
        self._running.discard(key)
        if isinstance(outcome, FlagAnswer):
            answer = outcome
        elif isinstance(outcome, tuple):
            answer = _state(call, outcome)
        elif isinstance(outcome, HTTPException):
            answer = _failed(call, outcome.status_code, str(outcome.detail))
        elif isinstance(outcome, FlagRangeError):
            answer = _failed(call, 409, str(outcome))
        elif isinstance(outcome, StoreError):
            answer = _failed(call, 503, outcome.message)
        else:
            log.error("a flag call from node %s failed", node, exc_info=outcome)
            answer = _failed(call, 500, "internal error in the controller")
        if call.op in ("set", "add") and answer.status in (0, 409):
            # A change was made (or refused for good): a repeat gets this answer.
            self._answered[key] = answer
            if len(self._answered) > REMEMBERED:
                self._answered.popitem(last=False)
        self._reply(node, answer)

    def _reply(self, node: str, answer: FlagAnswer) -> None:
        link = self.registry.links.get(node)
        if link is not None:
            link.send(answer)


def _invalid(call: FlagCall) -> str:
    """Why the store could not hold what ``call`` asks for ("" if it can)."""
    if not call.flag or len(call.flag) > MAX_FLAG_NAME or "\0" in call.flag:
        return f"a flag name has 1 to {MAX_FLAG_NAME} characters and no NUL"
    if call.text_value is not None and "\0" in call.text_value:
        return "a flag's text value may not contain NUL characters"
    for number in (call.int_value, call.delta):
        if number is not None and not INT_MIN <= number <= INT_MAX:
            return f"flag values are integers from {INT_MIN} to {INT_MAX}"
    return ""


def _state(call: FlagCall, state: tuple) -> FlagAnswer:
    values, version = state
    text, number = values if values is not None else (None, None)
    return FlagAnswer(
        id=call.id, deployment=call.deployment, text_value=text, int_value=number, version=version
    )


def _failed(call: FlagCall, status: int, error: str) -> FlagAnswer:
    return FlagAnswer(id=call.id, deployment=call.deployment, status=status, error=error)
