"""A deployment on a simulated node: its pipeline run inline, flag tasks as the
node's ``FlagCall`` messages (see ``shoal.agent.simulated``)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import cloudpickle

from shoal.agent.execution_graph_walk import ExecutionGraphWalk
from shoal.agent.executor_main import TEXT_LIMIT, encode_result, run_task, settle_stage
from shoal.library.flags import (
    AtomicDecrementFlagTask,
    AtomicIncrementFlagTask,
    GetFlagTask,
    SetFlagTask,
    WaitForExactFlagResultTask,
)
from shoal.model.execution_graph import ExecutionGraph
from shoal.model.flags import FlagValues
from shoal.model.pipeline import Pipeline, Task, Workload
from shoal.model.result import Failure, Result, Success
from shoal.protocol import DeploymentState, Prepare, StepResult
from shoal.protocol.flag_messages import FlagAnswer, FlagCall

if TYPE_CHECKING:
    from shoal.agent.simulated_node import SimulatedNode

WAIT_HOLD = 25.0  # longest one wait call is held, as a real executor asks


class FlagError(RuntimeError):
    """The controller refused a flag call (``status`` as in :class:`FlagAnswer`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SimulatedDeployment:
    """One deployment held by a simulated node, until the controller says Forget."""

    def __init__(self, spec: Prepare, node: SimulatedNode) -> None:
        self.id = spec.deployment
        self.spec = spec
        self.node = node
        self.state = "preparing"
        self.go = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.seen: dict[str, int] = {}  # flag -> newest version seen, as ExecutorFlags keeps
        self.steps = 0  # step results sent

    async def run(self) -> None:
        try:
            pipeline = cloudpickle.loads(self.spec.pipeline)
            if not isinstance(pipeline, Workload):
                raise TypeError(f"expected a Pipeline, got {type(pipeline).__name__}")
            walk = ExecutionGraphWalk(pipeline) if isinstance(pipeline, ExecutionGraph) else None
        except Exception as exc:
            self._state("failed", error=f"could not load the pipeline: {exc!r}")
            return
        self._state("prepared")
        await self.go.wait()
        self._state("running")
        if walk is not None:
            results, all_ok = await self._walk(walk)
        else:
            assert isinstance(pipeline, Pipeline)
            results, all_ok = await self._stages(pipeline)
        final: Result = Success(results) if all_ok else Failure(results)
        self._state(
            "finished", result=cloudpickle.dumps(final), result_text=repr(final)[:TEXT_LIMIT]
        )
        self.node.stats.deployments_done += 1

    async def _stages(self, pipeline: Pipeline) -> tuple[dict[str, list[Result]], bool]:
        results: dict[str, list[Result]] = {}
        all_ok = True
        for stage in pipeline.stages:
            previous = dict(results)
            outcomes = await asyncio.gather(*(self._step(t, previous) for t in stage))
            settled, stage_ok = settle_stage(stage, outcomes, results)
            for name, outcome, payload in settled:
                self._step_ended(name, outcome, payload)
            all_ok = all_ok and stage_ok
            if not stage_ok and pipeline.early_stopping:
                break
        return results, all_ok

    async def _walk(self, walk: ExecutionGraphWalk) -> tuple[dict[str, list[Result]], bool]:
        running: dict[asyncio.Task[Result], Task] = {}
        async with asyncio.TaskGroup() as tg:
            while True:
                for task in walk.ready():
                    running[tg.create_task(self._step(task, walk.previous()))] = task
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for step in done:
                    task = running.pop(step)
                    outcome, payload = encode_result(task.name, step.result())
                    walk.finished(task, outcome)
                    self._step_ended(task.name, outcome, payload)
        return walk.results, walk.ok

    def _step_ended(self, name: str, outcome: Result, payload: bytes) -> None:
        self.node.emit(
            StepResult(
                deployment=self.id,
                index=self.steps,
                task_name=name,
                ok=outcome.is_success,
                payload=payload,
                text=repr(outcome)[:TEXT_LIMIT],
            )
        )
        self.steps += 1

    async def _step(self, task: Task, previous: dict[str, list[Result]]) -> Result:
        """A flag task as its executor would do it, over the node's connection;
        any other task inline."""
        try:
            if isinstance(task, SetFlagTask):
                values = task.flag_values
                await self._flag("set", task.flag_name, values.text_value, values.int_value)
                return Success(0)
            if isinstance(task, AtomicIncrementFlagTask | AtomicDecrementFlagTask):
                delta = 1 if isinstance(task, AtomicIncrementFlagTask) else -1
                await self._flag("add", task.flag_name, delta=delta)
                return Success(0)
            if isinstance(task, GetFlagTask):
                answer = await self._flag("get", task.flag_name)
                return Success(FlagValues(answer.text_value, answer.int_value))
            if isinstance(task, WaitForExactFlagResultTask):
                return Success((await self._wait(task)).to_dict())
        except (FlagError, TimeoutError) as exc:
            return Failure(f"{type(exc).__name__}: {exc}")
        return run_task(task, previous)

    async def _wait(self, task: WaitForExactFlagResultTask) -> FlagValues:
        target = task.values
        deadline = None if task.timeout is None else time.monotonic() + task.timeout
        while True:
            left = WAIT_HOLD if deadline is None else max(0.0, deadline - time.monotonic())
            hold = min(WAIT_HOLD, left)
            answer = await self._flag(
                "wait",
                task.flag_name,
                target.text_value,
                target.int_value,
                after=self.seen.get(task.flag_name, 0),
                timeout=hold,
            )
            if answer.matched:
                return FlagValues(answer.text_value, answer.int_value)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"flag {task.flag_name!r} did not become {target!r}")

    async def _flag(
        self,
        op: str,
        flag: str,
        text_value: str | None = None,
        int_value: int | None = None,
        delta: int = 0,
        after: int = 0,
        timeout: float = 0.0,
    ) -> FlagAnswer:
        call = FlagCall(
            id=next(self.node.call_ids),
            op=op,
            flag=flag,
            deployment=self.id,
            text_value=text_value,
            int_value=int_value,
            delta=delta,
            after=after,
            timeout=timeout,
        )
        delay = 0.05
        while True:
            answer = await self.node.flag_call(call, timeout + 150.0)
            if answer.status == 503:
                await asyncio.sleep(delay)  # the store is away: nothing changed; again
                delay = min(delay * 2, 2.0)
                continue
            if answer.status == 404:
                raise FlagError(404, f"flag {flag!r} is not set")
            if answer.status:
                raise FlagError(answer.status, f"flag {flag!r}: {answer.error}")
            self.seen[flag] = max(self.seen.get(flag, 0), answer.version)
            return answer

    def _state(
        self,
        state: str,
        error: str | None = None,
        result: bytes | None = None,
        result_text: str | None = None,
    ) -> None:
        self.state = state
        self.node.emit(
            DeploymentState(
                deployment=self.id,
                state=state,
                error=error,
                result=result,
                result_text=result_text,
            )
        )
