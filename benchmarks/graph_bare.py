"""The machine's limits for graph tasks: a bare warm pool, and a bare relay chain.

The pool: no scheduler, no network, no records: the parent pickles ``(id,
function, args)`` onto a socketpair per worker and reads the ids back, keeping a
window of tasks in flight on each worker. What shoal does per task on top of
that is its own cost; :mod:`graph` prints shoal's rate beside this one.

The chain: one dependent step after another through the same four processes a
shoal step crosses (client, controller, agent, task worker), each a bare Python
loop that forwards a pickled message (asyncio in the two in the middle, as in
shoal): six one-way messages per step and nothing else. It is the floor any
design with that process layout meets on this machine.

    python benchmarks/graph_bare.py --tasks 10000 --workers 2 --chain 2000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import pickle
import selectors
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

LENGTH = struct.Struct("!I")


def _noop(i: int) -> None:
    return None


def _read_messages(sock: socket.socket, buffer: bytearray) -> list[Any]:
    chunk = sock.recv(1 << 20)
    if not chunk:
        raise EOFError
    buffer += chunk
    out = []
    while len(buffer) >= LENGTH.size:
        (size,) = LENGTH.unpack_from(buffer)
        if len(buffer) < LENGTH.size + size:
            break
        out.append(pickle.loads(bytes(buffer[LENGTH.size : LENGTH.size + size])))
        del buffer[: LENGTH.size + size]
    return out


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


def _worker(sock: socket.socket) -> None:
    buffer = bytearray()
    try:
        while True:
            for batch in _read_messages(sock, buffer):
                done = [task_id for task_id, fn, args in batch if fn(*args) is None or True]
                sock.sendall(frame(done))
    except EOFError:
        return


def bare_pool(tasks: int, workers: int = 2, batch: int = 1, window: int = 16) -> float:
    """Tasks per second of ``tasks`` no-ops on ``workers`` warm processes, sent
    ``batch`` per message with at most ``window`` in flight per worker."""
    ctx = multiprocessing.get_context("fork")
    pairs = [socket.socketpair() for _ in range(workers)]
    procs = [ctx.Process(target=_worker, args=(child,), daemon=True) for _, child in pairs]
    for proc in procs:
        proc.start()
    ends = [parent for parent, _ in pairs]
    for _, child in pairs:
        child.close()
    try:
        # warm up: each worker answers once
        for end in ends:
            end.sendall(frame([(0, _noop, (0,))]))
            buffer = bytearray()
            while not _read_messages(end, buffer):
                pass
        selector = selectors.DefaultSelector()
        buffers = {end.fileno(): bytearray() for end in ends}
        for end in ends:
            selector.register(end, selectors.EVENT_READ)
        in_flight = dict.fromkeys(buffers, 0)
        next_id, done = 0, 0
        t0 = time.perf_counter()

        def feed(end: socket.socket) -> None:
            nonlocal next_id
            while in_flight[end.fileno()] + batch <= window and next_id < tasks:
                count = min(batch, tasks - next_id)
                end.sendall(frame([(next_id + k, _noop, (next_id + k,)) for k in range(count)]))
                next_id += count
                in_flight[end.fileno()] += count

        for end in ends:
            feed(end)
        while done < tasks:
            for key, _ in selector.select():
                end = key.fileobj
                assert isinstance(end, socket.socket)
                for ids in _read_messages(end, buffers[end.fileno()]):
                    done += len(ids)
                    in_flight[end.fileno()] -= len(ids)
                feed(end)
        seconds = time.perf_counter() - t0
        selector.close()
        return tasks / seconds
    finally:
        for end in ends:
            end.close()
        for proc in procs:
            proc.join(5)


class _Forward(asyncio.Protocol):
    """A hop of the bare chain: frames from one side go on to the other, unchanged
    but decoded and encoded again (as a real hop reads what it forwards)."""

    def __init__(self) -> None:
        self.peer: _Forward | None = None
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= LENGTH.size:
            (size,) = LENGTH.unpack_from(self.buffer)
            if len(self.buffer) < LENGTH.size + size:
                return
            message = pickle.loads(bytes(self.buffer[LENGTH.size : LENGTH.size + size]))
            del self.buffer[: LENGTH.size + size]
            assert self.peer is not None and self.peer.transport is not None
            self.peer.transport.write(frame(message))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _hop(upstream_port: int, listen: multiprocessing.connection.Connection, worker: bool) -> None:
    """A middle process: listens (for the side before it) and connects on (to the
    next hop, or to a task worker it starts over a socketpair)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        inbound, outbound = _Forward(), _Forward()
        inbound.peer, outbound.peer = outbound, inbound
        if worker:
            ours, theirs = socket.socketpair()
            proc = multiprocessing.get_context("fork").Process(
                target=chain_worker, args=(theirs, ours), daemon=True
            )
            proc.start()
            theirs.close()
            await loop.create_unix_connection(lambda: outbound, sock=ours)
        else:
            await loop.create_connection(lambda: outbound, "127.0.0.1", upstream_port)
        server = await loop.create_server(lambda: inbound, "127.0.0.1", 0)
        listen.send(server.sockets[0].getsockname()[1])
        await inbound.closed
        assert outbound.transport is not None
        outbound.transport.close()
        server.close()

    asyncio.run(main())


def chain_worker(sock: socket.socket, parent_end: socket.socket | None = None) -> None:
    """A bare task worker: adds one to each step's value. ``parent_end``: the
    parent's end of the socketpair, inherited by the fork and closed here, so
    that the parent's going away (killed, too) ends this worker."""
    if parent_end is not None:
        parent_end.close()
    buffer = bytearray()
    try:
        while True:
            for step, value in _read_messages(sock, buffer):
                sock.sendall(frame((step, value + 1)))
    except EOFError:
        return


def time_chain(step: Callable[[int, int], int], steps: int) -> tuple[float, float]:
    """(seconds per step, CPU seconds per step of this process and its children)
    of ``steps`` calls ``value = step(i, value)`` from 0, after 200 to warm up;
    each step must add one."""
    import psutil

    value = 0
    for i in range(200):
        value = step(i, value)
    value = 0
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    c0 = sum(sum(p.cpu_times()[:2]) for p in processes)
    t0 = time.perf_counter()
    for i in range(steps):
        value = step(i, value)
    seconds = time.perf_counter() - t0
    cpu = sum(sum(p.cpu_times()[:2]) for p in processes) - c0
    assert value == steps, value
    return seconds / steps, cpu / steps


def bare_chain(steps: int) -> tuple[float, float]:
    """(seconds per step, CPU seconds per step over all four processes) of a chain
    of ``steps`` dependent steps through client, controller-like and agent-like
    hops and a task worker."""
    ctx = multiprocessing.get_context("fork")
    agent_end, agent_port = multiprocessing.Pipe()
    agent = ctx.Process(target=_hop, args=(0, agent_port, True))
    agent.start()
    port = agent_end.recv()
    hub_end, hub_port = multiprocessing.Pipe()
    hub = ctx.Process(target=_hop, args=(port, hub_port, False))
    hub.start()
    port = hub_end.recv()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()

        def step(i: int, value: int) -> int:
            sock.sendall(frame((i, value)))
            replies: list[Any] = []
            while not replies:
                replies = _read_messages(sock, buffer)
            return int(replies[0][1])

        timing = time_chain(step, steps)
    for proc in (hub, agent):
        proc.join(10)
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chain", type=int, default=2000, help="steps of the bare chain")
    args = parser.parse_args()
    for batch, window in ((1, 16), (16, 64)):
        rate = bare_pool(args.tasks, args.workers, batch, window)
        print(f"bare pool, {batch} task(s) per message: {rate:,.0f} tasks/s")
    seconds, cpu = bare_chain(args.chain)
    print(f"bare chain: {seconds * 1000:.3f} ms per step, {cpu * 1e6:.0f} us of CPU per step")


if __name__ == "__main__":
    main()
