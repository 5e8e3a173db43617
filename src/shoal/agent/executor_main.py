"""An executor process: loads one pipeline, waits for Go, runs its steps.

Started by the agent as ``python -m shoal.agent.executor_main FD`` with a
socketpair end on FD. Task output goes to this process's stdout/stderr, which
the agent streams as log lines; protocol messages go over the socket only.
If the agent dies, the socket closes and this process ends its whole group.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cloudpickle

from shoal.agent.execution_graph_walk import ExecutionGraphWalk
from shoal.client.executor_flags import FlagRelay, use_relay
from shoal.model.execution_graph import ExecutionGraph, ExecutionGraphError
from shoal.model.pipeline import Pipeline, Task, Workload
from shoal.model.result import Failure, Result, Success
from shoal.protocol.codec import FrameDecoder, FrameEncoder
from shoal.protocol.executor_messages import (
    PIPE_LIMIT,
    Done,
    FlagAnswer,
    FromExecutor,
    Go,
    Load,
    Loaded,
    LoadFailed,
    Step,
    ToExecutor,
)
from shoal.protocol.framing import BlockingFrames

TEXT_LIMIT = 2000


class ExecutorPipe:
    """The executor's end of the socketpair to its agent: blocking, thread-safe
    messages in shoal's one framing (not a shoal Channel: a private pipe between
    two local processes, with no capability or credit to speak of)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._frames = BlockingFrames(sock, limit=PIPE_LIMIT)
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[ToExecutor] = FrameDecoder(ToExecutor)

    def send(self, message: FromExecutor) -> None:
        self._frames.send(self._encoder.encode_one(message))

    def receive(self) -> ToExecutor | None:
        """The next message, or None once the agent closed its end."""
        try:
            body = self._frames.receive()
        except EOFError:  # it went in the middle of a message: gone all the same
            return None
        return None if body is None else self._decoder.decode_one(body)


def _die_with_agent() -> None:
    # Everything this executor started is in its process group: end them all.
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(1)


def run_task(task: Task, previous: dict[str, list[Result]]) -> Result:
    try:
        task.previous_steps = previous
        value = task.run()
    except BaseException:  # a step may raise anything, SystemExit included
        return Failure(traceback.format_exc())
    return value if isinstance(value, Result) else Success(value)


def encode_result(task_name: str, result: Result) -> tuple[Result, bytes]:
    try:
        return result, cloudpickle.dumps(result)
    except Exception as exc:
        failed = Failure(f"the result of task {task_name!r} cannot be pickled: {exc!r}")
        return failed, cloudpickle.dumps(failed)


def settle_stage(
    stage: Sequence[Task], outcomes: Sequence[Result], results: dict[str, list[Result]]
) -> tuple[list[tuple[str, Result, bytes]], bool]:
    """One stage's outcomes made sendable and added to ``results``: each task's
    ``(name, outcome, pickled outcome)`` in order, and whether all succeeded."""
    settled = []
    for task, outcome in zip(stage, outcomes, strict=True):
        outcome, payload = encode_result(task.name, outcome)
        results.setdefault(task.name, []).append(outcome)
        settled.append((task.name, outcome, payload))
    return settled, all(outcome.is_success for _, outcome, _ in settled)


def run_pipeline(pipeline: Pipeline, channel: ExecutorPipe) -> None:
    results: dict[str, list[Result]] = {}
    all_ok = True
    index = 0
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="step") as pool:
        for stage in pipeline.stages:
            previous = dict(results)
            if len(stage) == 1:
                outcomes = [run_task(stage[0], previous)]
            else:
                outcomes = list(pool.map(run_task, stage, [previous] * len(stage)))
            settled, stage_ok = settle_stage(stage, outcomes, results)
            for name, outcome, payload in settled:
                channel.send(
                    Step(
                        index=index,
                        task_name=name,
                        ok=outcome.is_success,
                        payload=payload,
                        text=repr(outcome)[:TEXT_LIMIT],
                    )
                )
                index += 1
            all_ok = all_ok and stage_ok
            if not stage_ok and pipeline.early_stopping:
                break
    finish(channel, results, all_ok)


def run_execution_graph(graph: ExecutionGraph, channel: ExecutorPipe) -> None:
    """Walk ``graph``, each task in a thread of its own as it becomes ready (a
    netUnicorn graph may hold tasks that wait for each other, so no pool
    bounds them), reporting each task's end as it comes."""
    walk = ExecutionGraphWalk(graph)
    ended: queue.SimpleQueue[tuple[Task, Result]] = queue.SimpleQueue()

    def run(task: Task, previous: dict[str, list[Result]]) -> None:
        ended.put((task, run_task(task, previous)))

    index = 0
    while True:
        for task in walk.ready():
            # Not kept to join: a loop may run for ever, and a step's thread is
            # done once its result is in the queue.
            threading.Thread(target=run, args=(task, walk.previous()), name="step").start()
        if not walk.running:
            break
        task, outcome = ended.get()
        outcome, payload = encode_result(task.name, outcome)
        walk.finished(task, outcome)
        channel.send(
            Step(
                index=index,
                task_name=task.name,
                ok=outcome.is_success,
                payload=payload,
                text=repr(outcome)[:TEXT_LIMIT],
            )
        )
        index += 1
    for waiting in walk.stuck:
        print(f"shoal: the execution graph stopped with {waiting}", file=sys.stderr)
    finish(channel, walk.results, walk.ok)


def finish(channel: ExecutorPipe, results: dict[str, list[Result]], ok: bool) -> None:
    """Send the run's end: every task's results, as a Success if all went well."""
    final: Result = Success(results) if ok else Failure(results)
    sys.stdout.flush()
    sys.stderr.flush()
    channel.send(Done(ok=ok, payload=cloudpickle.dumps(final), text=repr(final)[:TEXT_LIMIT]))


def main() -> None:
    channel = ExecutorPipe(socket.socket(fileno=int(sys.argv[1])))
    first = channel.receive()
    if not isinstance(first, Load):
        _die_with_agent()
        return
    try:
        pipeline = cloudpickle.loads(first.pipeline)
        if not isinstance(pipeline, Workload):
            raise TypeError(f"expected a Pipeline, got {type(pipeline).__name__}")
        if isinstance(pipeline, ExecutionGraph):
            ExecutionGraphWalk(pipeline)  # a graph that breaks the rules fails here
    except ExecutionGraphError as exc:
        channel.send(LoadFailed(error=f"the execution graph cannot run: {exc}"))
        return
    except Exception:
        channel.send(LoadFailed(error="could not load the pipeline:\n" + traceback.format_exc()))
        return
    # A pipeline pickled by a shoal client before the variables went in Prepare
    # carried them itself (newer ones are in this process's environment already).
    os.environ.update(getattr(pipeline, "executor_environment", None) or {})
    # Flag calls of the steps go to the agent over this channel, which it relays
    # on its WebSocket: no HTTP connection per executor, no request per call.
    relay = FlagRelay(channel.send)
    use_relay(relay)
    channel.send(Loaded())
    go = threading.Event()

    def watch_agent() -> None:
        while True:
            message = channel.receive()
            if message is None:
                _die_with_agent()
            if isinstance(message, FlagAnswer):
                relay.answered(message)
            elif isinstance(message, Go):
                go.set()

    threading.Thread(target=watch_agent, name="agent-watch", daemon=True).start()
    go.wait()
    if isinstance(pipeline, ExecutionGraph):
        run_execution_graph(pipeline, channel)
    else:
        run_pipeline(pipeline, channel)


if __name__ == "__main__":
    main()
