"""One deployment on this node: requirements, executor, steps, final result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import msgspec

from shoal.agent.channel_server import ChannelServer
from shoal.agent.executor_process import ExecutorProcess, run_shell
from shoal.channel.handover import ExecutorEndpoints, handover_pair
from shoal.protocol import DeploymentReport, DeploymentState, LogLine, Prepare, StepResult
from shoal.protocol.executor_messages import Done, Go, Load, Loaded, LoadFailed, Step
from shoal.protocol.flag_messages import FlagAnswer, FlagCall

log = logging.getLogger("shoal.agent")

Emit = Callable[[object], None]
TERMINAL = frozenset({"finished", "failed", "cancelled", "lost"})
# How long a finished executor's output may take to end before the run is
# reported finished (its last lines are in the pipes already; this is for EOF).
OUTPUT_DRAIN = 1.0


class DeploymentRunner:
    """Drives one executor through prepare -> prepared -> running -> finished.

    Everything it learns is kept here until the controller says Forget, so a
    reconnecting agent can report it again in full.
    """

    def __init__(
        self, spec: Prepare, emit: Emit, endpoint: str, channels: ChannelServer | None = None
    ) -> None:
        self.spec = spec
        self.channels = channels  # where the executor's own endpoints are served
        self.id = spec.deployment
        self.emit = emit
        self.endpoint = endpoint
        self.state = "preparing"
        self.error: str | None = None
        self.steps: list[StepResult] = []
        self.result: bytes | None = None
        self.result_text: str | None = None
        self.executor: ExecutorProcess | None = None
        # Flag calls relayed to the controller and not answered yet, by id: sent
        # again after a reconnect, since the answer may have been lost with the link.
        self.flag_calls: dict[int, FlagCall] = {}
        self._go = asyncio.Event()
        self._cancelled = False

    def report(self) -> DeploymentReport:
        return DeploymentReport(
            id=self.id,
            state=self.state,
            error=self.error,
            steps=list(self.steps),
            result=self.result,
            result_text=self.result_text,
        )

    def start(self) -> None:
        self._go.set()

    def flag_answer(self, answer: FlagAnswer) -> None:
        """Hand the controller's answer to the executor that asked."""
        if self.flag_calls.pop(answer.id, None) is not None and self.executor is not None:
            self.executor.post(answer)

    async def cancel(self) -> None:
        self._cancelled = True
        self._go.set()
        if self.executor is not None:
            await self.executor.kill()
        if self.state not in TERMINAL:
            self._set_state("cancelled", error="cancelled")

    async def run(self) -> None:
        """The whole life of the deployment; never raises."""
        try:
            await self._run()
        except asyncio.CancelledError:
            if self.executor is not None:
                await asyncio.shield(self.executor.kill(grace=0.5))
            raise
        except Exception as exc:
            log.exception("deployment %s failed inside the agent", self.id)
            self._set_state("failed", error=f"agent error: {exc!r}")
        finally:
            if self.executor is not None and self.executor.proc.returncode is None:
                await self.executor.kill(grace=0.5)

    async def _run(self) -> None:
        for command in self.spec.requirements:
            code, tail = await run_shell(command, self._log)
            if code != 0:
                self._set_state(
                    "failed",
                    error=f"requirement {command!r} exited with code {code}:\n{tail}",
                )
                return
            if self._cancelled:
                return
        env = dict(self.spec.env)
        env["SHOAL_ENDPOINT"] = self.endpoint
        endpoints: ExecutorEndpoints | None = None
        if self.channels is not None:
            ours, theirs = handover_pair()
            endpoints = ExecutorEndpoints(ours, self.channels)
            try:
                self.executor = await ExecutorProcess.spawn(env, handover=theirs)
            finally:
                theirs.close()
        else:
            self.executor = await ExecutorProcess.spawn(env)
        async with asyncio.TaskGroup() as tg:
            output = tg.create_task(self.executor.pump_output(self._log))
            serving = tg.create_task(endpoints.serve()) if endpoints is not None else None
            await self._drive(self.executor, output)
            if serving is not None:
                serving.cancel()
            # Ends stragglers a step left behind; they would hold the output pipes open.
            await self.executor.kill(grace=0.5)

    async def _drive(self, executor: ExecutorProcess, output: asyncio.Task[None]) -> None:
        await executor.send(Load(pipeline=self.spec.pipeline))
        first = await executor.receive()
        if isinstance(first, LoadFailed):
            self._set_state("failed", error=first.error)
            return
        if not isinstance(first, Loaded):
            self._set_state("failed", error=self._exit_reason(await executor.proc.wait()))
            return
        self._set_state("prepared")
        await self._go.wait()
        if self._cancelled:
            return
        await executor.send(Go())
        self._set_state("running")
        while True:
            message = await executor.receive()
            if isinstance(message, FlagCall):
                # Only the agent names the deployment: an executor speaks for its own.
                call = msgspec.structs.replace(message, deployment=self.id)
                self.flag_calls[call.id] = call
                self.emit(call)
            elif isinstance(message, Step):
                step = StepResult(
                    deployment=self.id,
                    index=message.index,
                    task_name=message.task_name,
                    ok=message.ok,
                    payload=message.payload,
                    text=message.text,
                )
                self.steps.append(step)
                self.emit(step)
            elif isinstance(message, Done):
                self.result, self.result_text = message.payload, message.text
                # The executor flushed its output before Done and exits after it:
                # its pipes end then, and every line it printed goes out before
                # the state that ends the run, so logs read once it has finished
                # are whole. An executor slow to exit, or a straggler a step left
                # holding the pipes, is not waited for long (kill ends it).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(output), OUTPUT_DRAIN)
                self._set_state("finished")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(executor.proc.wait(), 5)
                return
            elif message is None:
                if self._cancelled:
                    return
                code = await executor.proc.wait()
                self._set_state("failed", error=self._exit_reason(code))
                return

    def _exit_reason(self, code: int) -> str:
        if code < 0:
            return f"the executor process was killed by signal {-code}"
        return f"the executor process exited with code {code} before finishing"

    def _set_state(self, state: str, error: str | None = None) -> None:
        if self.state in TERMINAL:
            return
        self.state = state
        if error is not None:
            self.error = error
        final = state in TERMINAL
        self.emit(
            DeploymentState(
                deployment=self.id,
                state=state,
                error=self.error if final or error else None,
                result=self.result if final else None,
                result_text=self.result_text if final else None,
            )
        )

    def _log(self, stream: str, line: str) -> None:
        self.emit(LogLine(deployment=self.id, stream=stream, line=line, ts=time.time()))
