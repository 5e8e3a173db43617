"""The relay's kernel move (ZeroCopyPump) on socket pairs: bytes arrive whole
and in order, a source that ends early is told apart, and closing lets go of
every descriptor. The relay around it is tested in test_relay_splice.py."""

from __future__ import annotations

import asyncio
import os
import socket

import psutil
import pytest

from shoal.controller.zero_copy import ZeroCopyPump

pytestmark = pytest.mark.skipif(not hasattr(os, "splice"), reason="os.splice is Linux's")


def _pairs() -> tuple[socket.socket, socket.socket, socket.socket, socket.socket]:
    writer, source = socket.socketpair()
    target, reader = socket.socketpair()
    for sock in (writer, source, target, reader):
        sock.setblocking(False)
    return writer, source, target, reader


async def _move(data: bytes, size: int, end_early: bool = False) -> tuple[bytes, object, int]:
    loop = asyncio.get_running_loop()
    writer, source, target, reader = _pairs()
    done: asyncio.Future[object] = loop.create_future()
    moved = 0

    def count(n: int) -> None:
        nonlocal moved
        moved += n

    pump = ZeroCopyPump(loop, source.fileno(), target.fileno())
    pump.move(size, count, lambda error: done.set_result(error))
    received = bytearray()

    async def write() -> None:
        await loop.sock_sendall(writer, data)
        if end_early:
            writer.close()

    async def read() -> None:
        while len(received) < min(size, len(data)):
            chunk = await loop.sock_recv(reader, 1 << 20)
            if not chunk:
                return
            received.extend(chunk)

    async with asyncio.timeout(30):
        async with asyncio.TaskGroup() as group:
            group.create_task(write())
            group.create_task(read())
            error = await done
    assert moved == len(received)
    pump.close()
    for sock in (writer, source, target, reader):
        sock.close()
    return bytes(received), error, moved


@pytest.mark.timeout(60)
def test_the_bytes_of_a_frame_arrive_whole_and_the_rest_stays() -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    size = 5 * 1024 * 1024  # the frame; the 17 bytes after it are the next one's
    received, error, _ = asyncio.run(_move(data, size))
    assert error is None
    assert received == data[:size]


@pytest.mark.timeout(60)
def test_a_source_that_ends_early_is_an_eof() -> None:
    data = os.urandom(300_000)
    received, error, _ = asyncio.run(_move(data, 1_000_000, end_early=True))
    assert isinstance(error, EOFError)
    assert received == data


@pytest.mark.timeout(60)
def test_closing_a_pump_in_the_middle_lets_go_of_its_descriptors() -> None:
    async def stop_in_the_middle() -> int:
        loop = asyncio.get_running_loop()
        writer, source, target, reader = _pairs()
        before = psutil.Process().num_fds()
        pump = ZeroCopyPump(loop, source.fileno(), target.fileno())
        called: list[object] = []
        some_moved = asyncio.Event()
        pump.move(10_000_000, lambda n: some_moved.set(), called.append)
        await loop.sock_sendall(writer, os.urandom(100_000))  # of 10 MB: it waits for more
        async with asyncio.timeout(10):
            await some_moved.wait()
        pump.close()
        after = psutil.Process().num_fds()
        # The original sockets still work: the pump held duplicates.
        await loop.sock_sendall(target, b"still mine")
        assert called == [] and pump.closed
        for sock in (writer, source, target, reader):
            sock.close()
        return after - before

    assert asyncio.run(stop_in_the_middle()) == 0
