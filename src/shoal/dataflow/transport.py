"""Moving values between jobs: every pipe is a Channel.

A job host on a node serves two endpoints on its agent's channel server
(handed to its executor, :mod:`shoal.channel.handover`): ``in`` for its input
pipes and ``out`` for output pipes whose receiver opens the channel. A pipe's
channel is opened by the sender, to the receiver's ``in`` endpoint, unless the
receiver runs in the client (a LOCAL job, on no node): then the receiver opens
it, to the sender's ``out`` endpoint. Between two LOCAL jobs values go in
process. Whether a channel goes direct or through the controller is the
Channel's business; nothing here knows.

All of it runs on the process's channel loop (asyncio); the job's own code
runs in its thread and meets the pipes in :meth:`shoal.dataflow.out_pipe.OutPipe.put` (which blocks
while the pipe's buffer is full) and in the input aligner.

On a channel the opener first says hello (the run's token, the pipe, and the
job and generation it expects at the other end) and the target answers OK,
before any pickle is read. Then the sender sends batches of values (one
bare pickle per batch, of a list of :data:`Segment`) and, at the pipe's end,
END, then closes the channel.

Back-pressure is the Channel's credit: a receiver whose job has a full queue
stops reading its channel, the sender's channel queue fills, its writer
waits, its buffer fills and the producing job blocks in ``emit``. A pipe whose
receiver is gone (a failover in progress) drops values instead of blocking,
so the rest of the network keeps flowing; the writer reconnects when the
coordinator sends a new route.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import logging
import os
import pickle
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from shoal.channel import AsyncChannel, ChannelClosed, ChannelError, ChannelUnavailable, connect
from shoal.channel.handover import EndpointHost
from shoal.channel.sync import channel_loop
from shoal.dataflow.segments import Segment

if TYPE_CHECKING:
    from shoal.dataflow.out_pipe import OutPipe

log = logging.getLogger("shoal.dataflow")

LOCAL_NODE = "client"  # where LOCAL jobs run: the coordinator's process, on no node
TOKEN_BYTES = 32
RECONNECT_EVERY = 0.5
OPEN_TIMEOUT = 10.0
MAX_BUFFER_BYTES = 8 << 20
MAX_BATCH_BYTES = 1 << 20
HELLO, OK, END = b"H", b"K", b"E"
DATA = b"\x80"  # a batch is a bare pickle (protocol 2 and up start so): no copy to tag it


def endpoint_name(token: bytes, side: str, job: int, generation: int) -> str:
    """The endpoint of one job host (``side``: in or out), unique per run and generation."""
    digest = hashlib.sha256(token).hexdigest()[:24]
    return f"dataflow.{digest}.{side}.{job}.{generation}"


@dataclass(frozen=True)
class Route:
    """Where the other end of one pipe is now: ``endpoint`` on ``node`` (in this
    process when ``node`` is LOCAL_NODE), its job and generation. ``accept``: the
    other end opens the channel (it runs on no node); wait for it."""

    node: str
    endpoint: str
    job: int
    generation: int
    accept: bool = False


@dataclass(frozen=True)
class Reach:
    """How this process opens channels: the controller, and a bearer token there
    (asked for at each opening: a client's token changes when it logs in again,
    e.g. after a controller restart)."""

    controller: str
    token: Callable[[], str]

    @classmethod
    def from_environment(cls) -> Reach | None:
        """An executor's: the endpoint and token its agent gave it."""
        endpoint = os.environ.get("SHOAL_ENDPOINT")
        secret = os.environ.get("SHOAL_EXECUTOR_TOKEN")
        return cls(endpoint, lambda: secret) if endpoint and secret else None


def hello(token: bytes, pipe_id: int, job: int, generation: int) -> bytes:
    return HELLO + msgspec.msgpack.encode([token, pipe_id, job, generation])


def read_hello(data: bytes, token: bytes, job: int, generation: int) -> int | str:
    """The pipe id of a good hello, else why it is refused."""
    try:
        if data[:1] != HELLO:
            raise ValueError("no hello")
        theirs, pipe_id, their_job, their_generation = msgspec.msgpack.decode(data[1:])
    except (ValueError, TypeError, msgspec.DecodeError):
        return "a pipe must start with its hello"
    if not isinstance(theirs, bytes) or not hmac.compare_digest(theirs, token):
        return "wrong token"
    if (their_job, their_generation) != (job, generation) or not isinstance(pipe_id, int):
        return f"this is job {job} generation {generation}"
    return pipe_id


class PipeLink(Protocol):
    async def send(self, data: bytes) -> None: ...
    async def close(self, reason: str = "") -> None: ...
    async def aclose(self) -> None: ...


class InProcessLink:
    """A pipe between two LOCAL jobs: straight into the receiver's links."""

    def __init__(self, receiver: PipeLinks, pipe_id: int) -> None:
        self.receiver, self.pipe_id = receiver, pipe_id

    async def send(self, data: bytes) -> None:
        await self.receiver.take(self.pipe_id, data)

    async def close(self, reason: str = "") -> None:
        pass

    async def aclose(self) -> None:
        pass


# LOCAL job hosts of this process, by their ``in`` endpoint name.
LOCAL_RECEIVERS: dict[str, PipeLinks] = {}


class PipeLinks:
    """One job host's pipes on the channel loop: its output pipes' writers, its
    input pipes' readers, and its endpoints. Runs as one task group from
    :meth:`start` to :meth:`stop`.

    ``deliver(pipe_id, segments)`` and ``end(pipe_id)`` hand values to the job
    (deliver may block while ``room(pipe_id)`` is False: then it runs in a
    worker thread, not on the loop).
    """

    def __init__(
        self,
        token: bytes,
        job: int,
        generation: int,
        reach: Reach | None,
        deliver: Callable[[int, list[Segment]], None],
        end: Callable[[int], None],
        room: Callable[[int], bool],
        inputs: set[int] | None = None,
    ) -> None:
        self.token, self.job, self.generation = token, job, generation
        self.reach = reach
        self._deliver, self._end, self._room = deliver, end, room
        self.inputs = inputs
        self.loop = channel_loop()
        self.outputs: dict[int, OutPipe] = {}
        self.in_endpoint = endpoint_name(token, "in", job, generation)
        self.out_endpoint = endpoint_name(token, "out", job, generation)
        self._tg: asyncio.TaskGroup | None = None
        self._stopping: asyncio.Event | None = None
        self._sources: dict[int, tuple[Route, asyncio.Task[None]]] = {}
        self._open: set[AsyncChannel] = set()
        self._endpoints: EndpointHost | None = None
        self._running: Any = None

    # --- from the job host's threads -------------------------------------------

    def start(self, serve: bool) -> None:
        """Start; ``serve``: serve this host's endpoints on its node (else it is
        a LOCAL host, reached in process or by opening channels itself)."""
        started: asyncio.Future[None] | Any = None

        async def begin() -> Any:
            nonlocal started
            started = self.loop.create_future()
            self._running = self.loop.create_task(self._run(serve, started))
            await started

        asyncio.run_coroutine_threadsafe(begin(), self.loop).result(OPEN_TIMEOUT + 5)

    def stop(self) -> None:
        """End every pipe task and channel, and serve nothing more."""
        if self._running is None:
            return

        async def end() -> None:
            assert self._stopping is not None
            self._stopping.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running

        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(end(), self.loop).result(10)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in this host's task group (from any thread)."""

        def add() -> None:
            if self._tg is None or self._stopping is None or self._stopping.is_set():
                coro.close()
                return
            self.task(coro, "output")

        self.loop.call_soon_threadsafe(add)

    def set_sources(self, routes: dict[int, Route | None]) -> None:
        """Where the senders of inputs that this host opens are (a LOCAL host's)."""
        for pipe_id, route in routes.items():
            self.loop.call_soon_threadsafe(self._set_source, pipe_id, route)

    # --- on the loop --------------------------------------------------------------

    async def _run(self, serve: bool, started: asyncio.Future[None]) -> None:
        self._stopping = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                if serve:
                    self._endpoints = EndpointHost.of_process(self.loop)
                    if self._endpoints is None:
                        raise ChannelError("this process was not started by an agent")
                    await self._endpoints.serve(self.in_endpoint, self._accept_input)
                    await self._endpoints.serve(self.out_endpoint, self._accept_output)
                else:
                    LOCAL_RECEIVERS[self.in_endpoint] = self
                started.set_result(None)
                await self._stopping.wait()
                for task in list(asyncio.all_tasks(self.loop)):
                    if task.get_name().startswith(f"dataflow-{id(self)}-"):
                        task.cancel()
                for _, task in self._sources.values():
                    task.cancel()
                for channel in list(self._open):
                    await channel.aclose()
                raise _Stopped
        except* _Stopped:
            pass
        except* Exception as group:
            if not started.done():
                started.set_exception(group.exceptions[0])
            else:
                log.error("the pipes of job %s failed: %r", self.job, group.exceptions)
        finally:
            LOCAL_RECEIVERS.pop(self.in_endpoint, None)
            if self._endpoints is not None:
                self._endpoints.drop(self.in_endpoint)
                self._endpoints.drop(self.out_endpoint)

    def task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        assert self._tg is not None
        return self._tg.create_task(coro, name=f"dataflow-{id(self)}-{name}")

    async def take(self, pipe_id: int, data: bytes) -> bool:
        """One message of an input pipe; True at its end."""
        if data[:1] == DATA:
            segments = pickle.loads(data)
            if self._room(pipe_id):
                self._deliver(pipe_id, segments)
            else:
                await asyncio.to_thread(self._deliver, pipe_id, segments)
            return False
        if data[:1] == END:
            self._end(pipe_id)
            return True
        return False

    async def _receive(self, pipe_id: int, channel: AsyncChannel) -> bool:
        """Values of input ``pipe_id`` from ``channel`` until it ends; True if the
        pipe ended, False if the channel broke first (its sender will be back)."""
        ended = False
        self._open.add(channel)
        try:
            while True:
                for data in await channel.recv_many():
                    ended = await self.take(pipe_id, data) or ended
        except ChannelClosed:
            return ended
        except ChannelError as exc:
            log.info("pipe %s: sender lost (%s)", pipe_id, exc)
            return ended
        finally:
            self._open.discard(channel)

    async def _accept_input(self, channel: AsyncChannel) -> None:
        """A sender opened a channel to this host's inputs."""
        pipe_id = await self._greeted(channel, self.job, self.generation)
        if pipe_id is None:
            return
        if self.inputs is not None and pipe_id not in self.inputs:
            await channel.close(f"job {self.job} has no input pipe {pipe_id}")
            return
        await channel.send(OK)
        await self._receive(pipe_id, channel)

    async def _accept_output(self, channel: AsyncChannel) -> None:
        """A LOCAL receiver opened a channel to take one of this host's outputs."""
        pipe_id = await self._greeted(channel, self.job, self.generation)
        if pipe_id is None:
            return
        out = self.outputs.get(pipe_id)
        if out is None:
            await channel.close(f"job {self.job} has no output pipe {pipe_id}")
            return
        await channel.send(OK)
        await out.offer(channel)

    async def _greeted(self, channel: AsyncChannel, job: int, generation: int) -> int | None:
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                first = await channel.recv()
        except (TimeoutError, ChannelError):
            return None
        outcome = read_hello(first, self.token, job, generation)
        if isinstance(outcome, str):
            log.warning("refused a pipe from %s: %s", channel.peer, outcome)
            await channel.close(outcome)
            return None
        return outcome

    async def open(self, route: Route, pipe_id: int) -> AsyncChannel | Refused | None:
        """A channel to ``route``'s endpoint, greeted and answered; None if it cannot
        be had now but may later (the controller cannot be reached or the node
        is not online: a controller restarting); REFUSED if it failed otherwise
        (the receiver's host said no, or did not answer)."""
        if self.reach is None:
            return REFUSED  # this host opens no channels: nothing it sends can leave
        try:
            token = await asyncio.to_thread(self.reach.token)
            channel = await connect(self.reach.controller, token, route.node, route.endpoint)
        except ChannelError as exc:
            log.debug(
                "pipe %s: cannot reach %s on %s: %s", pipe_id, route.endpoint, route.node, exc
            )
            return None if isinstance(exc, ChannelUnavailable) else REFUSED
        try:
            await channel.send(hello(self.token, pipe_id, route.job, route.generation))
            async with asyncio.timeout(OPEN_TIMEOUT):
                answer = await channel.recv()
        except (ChannelError, TimeoutError) as exc:
            log.debug("pipe %s: %s refused: %s", pipe_id, route.endpoint, exc)
            await channel.aclose()
            return REFUSED
        if answer != OK:
            await channel.aclose()
            return REFUSED
        return channel

    def _set_source(self, pipe_id: int, route: Route | None) -> None:
        current = self._sources.get(pipe_id)
        if current is not None and current[0] == route:
            return
        if current is not None:
            current[1].cancel()
            del self._sources[pipe_id]
        if route is not None and self._tg is not None and not self._stopping_set():
            task = self.task(self._read_source(pipe_id, route), f"source-{pipe_id}")
            self._sources[pipe_id] = (route, task)

    def _stopping_set(self) -> bool:
        return self._stopping is None or self._stopping.is_set()

    async def _read_source(self, pipe_id: int, route: Route) -> None:
        """Input ``pipe_id`` of a LOCAL host: open the sender's ``out`` endpoint and
        read, again after a break, until the pipe ends."""
        while True:
            channel = await self.open(route, pipe_id)
            if isinstance(channel, AsyncChannel):
                try:
                    if await self._receive(pipe_id, channel):
                        return
                finally:
                    await channel.aclose()
            await asyncio.sleep(RECONNECT_EVERY)  # a retry's pace, not a synchronisation


class Refused(enum.Enum):
    """What :meth:`PipeLinks.open` says when the receiver's host refused the pipe."""

    REFUSED = "refused"


REFUSED = Refused.REFUSED


class _Stopped(Exception):
    """Ends a PipeLinks' task group."""


__all__ = [
    "LOCAL_NODE",
    "REFUSED",
    "TOKEN_BYTES",
    "PipeLinks",
    "Reach",
    "Route",
    "endpoint_name",
]
