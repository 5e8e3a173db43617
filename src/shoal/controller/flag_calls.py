"""Flag calls that executors send through their agent's WebSocket.

An executor's flag operations travel over the connection its agent already
has, instead of a new HTTP request each. The agent names the deployment the
call came from; the call is believed only if that deployment is live and placed
on the node that relayed it (what the deployment's executor token would allow:
its own experiment's flags, while it runs).

A call may arrive twice when an agent reconnects and sends again what was not
answered: answers are remembered for a while, so a repeated ``add`` is answered
again rather than applied again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from fastapi import HTTPException

from shoal.controller.experiments import TERMINAL_DEPLOYMENT, ExperimentService
from shoal.controller.flags import FlagRangeError, FlagService, Values
from shoal.controller.registry import NodeRegistry
from shoal.protocol.flag_messages import FlagAnswer, FlagCall
from shoal.store.faults import StoreError

log = logging.getLogger("shoal.controller.flags")

REMEMBERED = 100_000  # answered calls kept to recognise a call sent again


class ExecutorFlagCalls:
    """Serves executors' flag calls, each in a task of the service's own TaskGroup."""

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
        self._answered: OrderedDict[tuple[str, str, int], FlagAnswer] = OrderedDict()
        self._running: set[tuple[str, str, int]] = set()

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
        self._running.add(key)
        self._tg.create_task(self._serve(node, call, key))

    async def _serve(self, node: str, call: FlagCall, key: tuple[str, str, int]) -> None:
        try:
            answer = await self._answer(node, call)
        except HTTPException as exc:
            answer = _failed(call, exc.status_code, str(exc.detail))
        except FlagRangeError as exc:
            answer = _failed(call, 409, str(exc))
        except StoreError as exc:
            answer = _failed(call, 503, exc.message)
        except Exception:
            log.exception("a flag call from node %s failed", node)
            answer = _failed(call, 500, "internal error in the controller")
        finally:
            self._running.discard(key)
        if call.op in ("set", "add") and answer.status in (0, 409):
            # A change was made (or refused for good): a repeat gets this answer.
            self._answered[key] = answer
            while len(self._answered) > REMEMBERED:
                self._answered.popitem(last=False)
        self._reply(node, answer)

    async def _answer(self, node: str, call: FlagCall) -> FlagAnswer:
        dep = self.experiments.deployments.get(call.deployment)
        if dep is None or dep.node != node or dep.state in TERMINAL_DEPLOYMENT:
            return _failed(call, 403, "this executor's deployment is not running on this node")
        experiment = dep.experiment_id
        if call.op == "get":
            state = await self.flags.get(experiment, call.flag)
            if state[0] is None:
                return _failed(call, 404, f"flag {call.flag!r} is not set")
            return _state(call, state)
        if call.op == "set":
            values: Values = (call.text_value, call.int_value)
            return _state(call, await self.flags.set(experiment, call.flag, values))
        if call.op == "add":
            return _state(call, await self.flags.add(experiment, call.flag, call.delta))
        if call.op == "wait":
            target: Values = (call.text_value, call.int_value)
            timeout = max(0.0, min(call.timeout, self.max_wait))
            got = await self.flags.wait(experiment, call.flag, target, call.after, timeout)
            if got is None:
                return _state(call, await self.flags.get(experiment, call.flag))
            answer = _state(call, got)
            answer.matched = True
            return answer
        return _failed(call, 400, f"unknown flag operation {call.op!r}")

    def _reply(self, node: str, answer: FlagAnswer) -> None:
        link = self.registry.links.get(node)
        if link is not None:
            link.send(answer)


def _state(call: FlagCall, state: tuple[Values | None, int]) -> FlagAnswer:
    values, version = state
    text, number = values if values is not None else (None, None)
    return FlagAnswer(
        id=call.id, deployment=call.deployment, text_value=text, int_value=number, version=version
    )


def _failed(call: FlagCall, status: int, error: str) -> FlagAnswer:
    return FlagAnswer(id=call.id, deployment=call.deployment, status=status, error=error)
