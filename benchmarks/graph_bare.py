"""The machine's limit for no-op tasks: a bare warm pool of Python workers.

No scheduler, no network, no records: the parent pickles ``(id, function,
args)`` onto a socketpair per worker and reads the ids back, keeping a window of
tasks in flight on each worker. What shoal does per task on top of that is its
own cost; :mod:`graph` prints shoal's rate beside this one.

    python benchmarks/graph_bare.py --tasks 10000 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import selectors
import socket
import struct
import time
from typing import Any

_LEN = struct.Struct("!I")


def _noop(i: int) -> None:
    return None


def _read_messages(sock: socket.socket, buffer: bytearray) -> list[Any]:
    chunk = sock.recv(1 << 20)
    if not chunk:
        raise EOFError
    buffer += chunk
    out = []
    while len(buffer) >= _LEN.size:
        (size,) = _LEN.unpack_from(buffer)
        if len(buffer) < _LEN.size + size:
            break
        out.append(pickle.loads(bytes(buffer[_LEN.size : _LEN.size + size])))
        del buffer[: _LEN.size + size]
    return out


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


def _worker(sock: socket.socket) -> None:
    buffer = bytearray()
    try:
        while True:
            for batch in _read_messages(sock, buffer):
                done = [task_id for task_id, fn, args in batch if fn(*args) is None or True]
                sock.sendall(_frame(done))
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
            end.sendall(_frame([(0, _noop, (0,))]))
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
                end.sendall(_frame([(next_id + k, _noop, (next_id + k,)) for k in range(count)]))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for batch, window in ((1, 16), (16, 64)):
        rate = bare_pool(args.tasks, args.workers, batch, window)
        print(f"bare pool, {batch} task(s) per message: {rate:,.0f} tasks/s")


if __name__ == "__main__":
    main()
