"""Simulated agents: many nodes in one process, each speaking the real agent protocol.

A :class:`SimulatedNode` opens its own WebSocket to ``/api/agents/ws`` and says
what a real agent says (``Hello`` with the join token, then its own node
credential; heartbeats; deployment states, step results and flag calls), but
runs no executor process: a pipeline's flag tasks become ``FlagCall`` messages
on the node's connection, as a real agent relays its executor's calls, and any
other task runs inline (meant for trivial steps). So one process holds
hundreds of nodes and what is measured is the controller, not how many
processes the machine can start.

:class:`Swarm` runs a set of them on an event loop in a background thread, for
benchmarks (``benchmarks/swarm.py``) and tests, and for an operator sizing a
controller before the testbed exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import cloudpickle
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from shoal.agent.executor_main import TEXT_LIMIT, run_task, settle_stage
from shoal.library.flags import (
    AtomicDecrementFlagTask,
    AtomicIncrementFlagTask,
    GetFlagTask,
    SetFlagTask,
    WaitForExactFlagResultTask,
)
from shoal.model.flags import FlagValues
from shoal.model.pipeline import Pipeline, Task
from shoal.model.result import Failure, Result, Success
from shoal.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ControllerMessage,
    DeploymentState,
    Forget,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
    Prepare,
    Start,
    StepResult,
    Welcome,
)
from shoal.protocol.flag_messages import FlagAnswer, FlagCall

log = logging.getLogger("shoal.agent.simulated")

CLOSE_REFUSED = 4403
WAIT_HOLD = 25.0  # longest one wait call is held, as a real executor asks


@dataclass
class SwarmStats:
    """What the nodes of a swarm saw, summed (read from any thread)."""

    welcomed: int = 0  # Welcome messages received (first connections and reconnects)
    reconnects: int = 0  # connections after the first one of a node
    closed: dict[int, int] = field(default_factory=dict)  # close code -> count
    refused: int = 0  # nodes the controller refused for good
    heartbeats: int = 0
    flag_calls: int = 0
    flag_answers: int = 0
    deployments_done: int = 0
    frames_in: int = 0
    frames_out: int = 0


class FlagError(RuntimeError):
    """The controller refused a flag call (``status`` as in :class:`FlagAnswer`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Deployment:
    """One deployment held by a simulated node, until the controller says Forget."""

    def __init__(self, spec: Prepare, node: SimulatedNode) -> None:
        self.id = spec.deployment
        self.spec = spec
        self.node = node
        self.state = "preparing"
        self.pipeline: Pipeline | None = None
        self.go = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.seen: dict[str, int] = {}  # flag -> newest version seen, as ExecutorFlags keeps

    async def run(self) -> None:
        try:
            pipeline = cloudpickle.loads(self.spec.pipeline)
            if not isinstance(pipeline, Pipeline):
                raise TypeError(f"expected a Pipeline, got {type(pipeline).__name__}")
        except Exception as exc:
            self._state("failed", error=f"could not load the pipeline: {exc!r}")
            return
        self._state("prepared")
        await self.go.wait()
        self._state("running")
        results: dict[str, list[Result]] = {}
        all_ok, index = True, 0
        for stage in pipeline.stages:
            previous = dict(results)
            outcomes = await asyncio.gather(*(self._step(t, previous) for t in stage))
            settled, stage_ok = settle_stage(stage, outcomes, results)
            for name, outcome, payload in settled:
                self.node.emit(
                    StepResult(
                        deployment=self.id,
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
        final: Result = Success(results) if all_ok else Failure(results)
        self._state(
            "finished", result=cloudpickle.dumps(final), result_text=repr(final)[:TEXT_LIMIT]
        )
        self.node.stats.deployments_done += 1

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


class SimulatedNode:
    """One simulated agent on its own WebSocket; reconnects like a real one."""

    def __init__(
        self,
        name: str,
        ws_url: str,
        join_token: str,
        stats: SwarmStats,
        cpus: int = 1,
        properties: dict[str, str] | None = None,
        on_welcome: Callable[[str], None] | None = None,
        beats: HeartbeatWheel | None = None,
    ) -> None:
        self.name = name
        self.beats = beats
        self.properties = {"simulated": "true", **(properties or {})}
        self.on_welcome = on_welcome
        self.ws_url = ws_url
        self.join_token = join_token
        self.credential: str | None = None
        self.stats = stats
        self.cpus = cpus
        self.online = asyncio.Event()
        self.deployments: dict[str, _Deployment] = {}
        self.call_ids = itertools.count(1)
        self._calls: dict[int, tuple[FlagCall, asyncio.Future[FlagAnswer]]] = {}
        self._outbox: list[object] = []
        self._wake = asyncio.Event()
        self._encoder = FrameEncoder()
        self._decoder: FrameDecoder[ControllerMessage] = FrameDecoder(ControllerMessage)
        self._tg: asyncio.TaskGroup | None = None
        self._connections = 0

    def emit(self, message: object) -> None:
        self._outbox.append(message)
        self._wake.set()

    async def flag_call(self, call: FlagCall, patience: float) -> FlagAnswer:
        """Send ``call`` and wait for its answer; sent again after a reconnect."""
        future: asyncio.Future[FlagAnswer] = asyncio.get_running_loop().create_future()
        self._calls[call.id] = (call, future)
        self.stats.flag_calls += 1
        self.emit(call)
        try:
            async with asyncio.timeout(patience):
                return await future
        finally:
            self._calls.pop(call.id, None)

    async def run(self) -> None:
        """Serve until cancelled, reconnecting with a jittered backoff."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            backoff = 0.05
            while True:
                secret = self.credential or self.join_token
                try:
                    async with connect(
                        self.ws_url,
                        additional_headers={"Authorization": f"Bearer {secret}"},
                        max_size=256 * 1024 * 1024,
                        compression=None,
                        open_timeout=30,
                        ping_interval=None,  # heartbeats say we are alive
                    ) as ws:
                        backoff = 0.05
                        await self._session(ws)
                except InvalidStatus as exc:
                    if exc.response.status_code in (401, 403):
                        if self.credential is None:
                            self.stats.refused += 1
                            log.warning("node %s refused: wrong join token", self.name)
                            return
                        self.credential = None  # a controller with a new database: enroll
                except (OSError, TimeoutError, InvalidHandshake) as exc:
                    log.debug("node %s cannot connect: %s", self.name, exc)
                self.online.clear()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)

    async def _session(self, ws: ClientConnection) -> None:
        hello = Hello(
            name=self.name,
            version=PROTOCOL_VERSION,
            architecture="simulated",
            cpus=self.cpus,
            properties=self.properties,
        )
        await ws.send(self._encoder.encode([hello]))
        self._connections += 1
        if self._connections > 1:
            self.stats.reconnects += 1
        async with asyncio.TaskGroup() as tg:
            sender = tg.create_task(self._send_loop(ws))
            beats: asyncio.Task[None] | None = None
            beating = False
            try:
                async for data in ws:
                    if isinstance(data, str):
                        continue
                    self.stats.frames_in += 1
                    for message in self._decoder.decode(data):
                        if isinstance(message, Welcome) and not beating:
                            beating = True
                            if self.beats is not None:
                                self.beats.add(self, message.heartbeat_interval)
                            else:
                                beats = tg.create_task(self._heartbeats(message.heartbeat_interval))
                        self._handle(message)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                self.stats.closed[code] = self.stats.closed.get(code, 0) + 1
            finally:
                sender.cancel()
                if beats is not None:
                    beats.cancel()
                if beating and self.beats is not None:
                    self.beats.remove(self)

    def _handle(self, message: ControllerMessage) -> None:
        assert self._tg is not None
        if isinstance(message, Welcome):
            if message.credential:
                self.credential = message.credential
            self.stats.welcomed += 1
            if self.on_welcome is not None:
                self.on_welcome(self.name)
            self.online.set()
            for dep_id in message.forget:
                self._forget(dep_id)
            # Calls a dropped connection may have swallowed go again (answered once).
            for call, future in self._calls.values():
                if not future.done():
                    self.emit(call)
        elif isinstance(message, FlagAnswer):
            self.stats.flag_answers += 1
            waiting = self._calls.get(message.id)
            if waiting is not None and not waiting[1].done():
                waiting[1].set_result(message)
        elif isinstance(message, Prepare):
            if message.deployment not in self.deployments:
                dep = _Deployment(message, self)
                self.deployments[dep.id] = dep
                dep.task = self._tg.create_task(dep.run())
        elif isinstance(message, Start):
            dep = self.deployments.get(message.deployment)
            if dep is not None:
                dep.go.set()
        elif isinstance(message, Cancel):
            dep = self.deployments.get(message.deployment)
            if dep is not None and dep.task is not None:
                dep.task.cancel()
                dep._state("cancelled", error="cancelled")
        elif isinstance(message, Forget):
            self._forget(message.deployment)
        # Commands and graph work are not simulated: a simulated node runs pipelines.

    def _forget(self, dep_id: str) -> None:
        dep = self.deployments.pop(dep_id, None)
        if dep is not None and dep.task is not None and not dep.task.done():
            dep.task.cancel()

    async def _send_loop(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._outbox:
                    batch, self._outbox = self._outbox, []
                    await ws.send(self._encoder.encode(batch))
                    self.stats.frames_out += 1

    def beat(self) -> None:
        self.stats.heartbeats += 1
        self.emit(Heartbeat(cpu=1.0, memory=10.0, memory_used=50 << 20, load=0.1))

    async def _heartbeats(self, interval: float) -> None:
        # Spread the fleet's beats over the interval instead of all at once.
        await asyncio.sleep(random.random() * interval)
        while True:
            self.beat()
            await asyncio.sleep(interval)


class HeartbeatWheel:
    """The heartbeats of a swarm's nodes from one task, not a timer per node.

    A thousand sleeping tasks cost the swarm more than its beats; the swarm
    shares the machine with the controller it measures, so it spends as little
    as it can. Each node beats at the interval its Welcome gave, the first beat
    at a random point of it (a fleet's beats spread out, as real agents' do).
    """

    TICK = 0.02  # seconds between looks at who is due

    def __init__(self) -> None:
        # (due, turn, node): a node's turn changes when it is added again, so an
        # entry from its previous connection is dropped when it comes up.
        self._due: list[tuple[float, int, SimulatedNode]] = []  # a heap
        self._beating: dict[SimulatedNode, tuple[float, int]] = {}  # node -> (interval, turn)
        self._turns = itertools.count()

    def add(self, node: SimulatedNode, interval: float) -> None:
        turn = next(self._turns)
        self._beating[node] = (interval, turn)
        first = time.monotonic() + random.random() * interval
        heapq.heappush(self._due, (first, turn, node))

    def remove(self, node: SimulatedNode) -> None:
        self._beating.pop(node, None)  # its entry in the heap is dropped when due

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.TICK)
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                due, turn, node = heapq.heappop(self._due)
                interval, current = self._beating.get(node, (0.0, -1))
                if turn != current:
                    continue
                node.beat()
                # Due times advance by the interval, so a late tick does not drift the beat.
                heapq.heappush(self._due, (max(due + interval, now), turn, node))


class Swarm:
    """Simulated nodes on an event loop in a background thread::

        with Swarm(endpoint, join_token, [f"sim-{i}" for i in range(300)]) as swarm:
            swarm.wait_online(timeout=60)

    ``connect_rate`` spreads the first connections (nodes a second; 0: all at
    once), as a fleet that boots does. ``properties`` gives nodes properties of
    their own (by name; every node also says ``simulated=true``).
    ``on_welcome(name)`` is called on the swarm's thread the moment a node gets
    its Welcome, before anything else it does (a test looks at the store then).
    """

    def __init__(
        self,
        endpoint: str,
        join_token: str,
        names: Iterable[str],
        connect_rate: float = 0.0,
        properties: Mapping[str, dict[str, str]] | None = None,
        on_welcome: Callable[[str], None] | None = None,
    ) -> None:
        base = endpoint.rstrip("/")
        self.ws_url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.ws_url += "/api/agents/ws"
        self.join_token = join_token
        self.names = list(names)
        self.connect_rate = connect_rate
        self.properties = dict(properties or {})
        self.on_welcome = on_welcome
        self._beats = HeartbeatWheel()
        self.stats = SwarmStats()
        self.nodes: dict[str, SimulatedNode] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> Swarm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="swarm", daemon=True)
        self._thread.start()
        self._started.wait()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def online_count(self) -> int:
        return sum(node.online.is_set() for node in self.nodes.values())

    def wait_online(self, timeout: float) -> float:
        """Block until every node got its Welcome; the seconds it took. Raises TimeoutError."""
        t0 = time.monotonic()
        while self.online_count() < len(self.names):
            if self._error is not None:
                raise RuntimeError("the swarm stopped") from self._error
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(
                    f"{self.online_count()} of {len(self.names)} simulated nodes online "
                    f"after {timeout:g} s"
                )
            time.sleep(0.01)
        return time.monotonic() - t0

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            log.exception("the swarm stopped")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for name in self.names:
            self.nodes[name] = SimulatedNode(
                name,
                self.ws_url,
                self.join_token,
                self.stats,
                properties=self.properties.get(name),
                on_welcome=self.on_welcome,
                beats=self._beats,
            )
        self._started.set()
        async with asyncio.TaskGroup() as tg:
            wheel = tg.create_task(self._beats.run())
            runs = [
                tg.create_task(
                    self._run_node(node, i / self.connect_rate if self.connect_rate else 0)
                )
                for i, node in enumerate(self.nodes.values())
            ]
            await self._stop.wait()
            for run in [*runs, wheel]:
                run.cancel()

    @staticmethod
    async def _run_node(node: SimulatedNode, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        await node.run()


def node_names(count: int, prefix: str = "sim") -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]
