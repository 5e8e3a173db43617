"""Unit tests of the one framing (shoal.protocol.framing): the sans-IO splitters
and the stream transport that reads into a reused buffer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from shoal.channel.transport import StreamTransport
from shoal.protocol.framing import (
    HEADER,
    MAX_FRAME,
    FrameBuffer,
    FrameReader,
    FrameTooLarge,
    frame,
)

SMALL = 64  # a FrameBuffer small enough that the bodies below cross its edges
OWN = 16


def _stream(bodies: list[bytes]) -> bytes:
    return b"".join(frame(body) for body in bodies)


BODIES = [b"", b"a", b"0123456789", bytes(range(15)), bytes(16), bytes(range(200)), b"end"]


def _feed_buffer(frames: FrameBuffer, data: bytes, cuts: list[int]) -> list[bytes]:
    """Feed ``data`` to ``frames`` in pieces ending at ``cuts`` (and at the end),
    never writing more than get_buffer offers."""
    out: list[bytes] = []
    at = 0
    for end in [*cuts, len(data)]:
        while at < end:
            space = frames.get_buffer()
            assert len(space) > 0
            n = min(len(space), end - at)
            space[:n] = data[at : at + n]
            out += [bytes(body) for body in frames.filled(n)]
            at += n
    return out


def test_buffer_split_at_every_byte_boundary() -> None:
    data = _stream(BODIES)
    for cut in range(len(data) + 1):
        frames = FrameBuffer(size=SMALL, own=OWN)
        assert _feed_buffer(frames, data, [cut]) == BODIES, cut
        assert frames.at_boundary()


def test_buffer_one_byte_at_a_time() -> None:
    data = _stream(BODIES * 3)
    frames = FrameBuffer(size=SMALL, own=OWN)
    assert _feed_buffer(frames, data, list(range(len(data)))) == BODIES * 3


def test_buffer_frame_larger_than_the_buffer_gets_its_own() -> None:
    big = bytes(range(256)) * 40  # 10 KiB through a 64-byte buffer
    frames = FrameBuffer(size=SMALL, own=OWN)
    data = _stream([b"x", big, b"y"])
    got = _feed_buffer(frames, data, [3, 9, 100, 5000])
    assert got == [b"x", big, b"y"]
    # The large body is handed over in the bytearray it was received into.
    frames = FrameBuffer(size=SMALL, own=OWN)
    space = frames.get_buffer()
    head = frame(big)[: len(space)]
    space[: len(head)] = head
    assert frames.filled(len(head)) == []
    assert not frames.at_boundary()
    rest = frame(big)[len(head) :]
    space = frames.get_buffer()
    assert len(space) == len(rest)  # exactly the rest of the body, nothing beyond
    space[:] = rest
    (body,) = frames.filled(len(rest))
    assert isinstance(body, memoryview) and body == big


def _one_frame(frames: FrameBuffer, body: bytes) -> list[bytes | bytearray | memoryview]:
    data, got = frame(body), []
    while data:
        space = frames.get_buffer()
        n = min(len(space), len(data))
        space[:n] = data[:n]
        got += frames.filled(n)
        data = data[n:]
    return got


def test_buffer_large_bodies_reuse_memory_only_once_released() -> None:
    frames = FrameBuffer(size=SMALL, own=OWN, reuse=1000)
    (first,) = _one_frame(frames, b"1" * 500)
    (second,) = _one_frame(frames, b"2" * 400)  # the first is not released: not overwritten
    assert first == b"1" * 500 and second == b"2" * 400
    frames.release()
    (third,) = _one_frame(frames, b"3" * 300)
    assert third == b"3" * 300
    assert first[:300] == b"3" * 300  # the released buffer was used again
    (large,) = _one_frame(frames, b"4" * 2000)  # over ``reuse``: a buffer of its own
    assert large == b"4" * 2000 and first[:300] == b"3" * 300


def test_buffer_refuses_a_frame_over_the_limit() -> None:
    frames = FrameBuffer(size=SMALL, own=OWN, limit=1000)
    space = frames.get_buffer()
    space[: HEADER.size] = HEADER.pack(1001)
    with pytest.raises(FrameTooLarge, match="1001 bytes is over the limit of 1000"):
        frames.filled(HEADER.size)


def test_buffer_bad_sizes() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        FrameBuffer(size=16, own=16)


def test_reader_split_at_every_byte_boundary() -> None:
    data = _stream(BODIES)
    for cut in range(len(data) + 1):
        frames = FrameReader()
        assert frames.feed(data[:cut]) + frames.feed(data[cut:]) == BODIES, cut
        assert frames.at_boundary()


def test_reader_refuses_max_frame_exceeded() -> None:
    with pytest.raises(FrameTooLarge, match="over the limit"):
        FrameReader().feed(HEADER.pack(MAX_FRAME + 1))


async def _pair() -> tuple[StreamTransport, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    return await StreamTransport.from_socket(ours), theirs


async def _round_trip() -> None:
    transport, peer = await _pair()
    other = await StreamTransport.from_socket(peer)
    try:
        bodies = [b"a", bytes(3 * 1024 * 1024), b"b" * 70_000, b"", b"c"]
        await transport.send(bodies)
        got: list[bytes] = []
        async with asyncio.timeout(20):
            while len(got) < len(bodies):
                got += [bytes(body) for body in await other.read() or []]
        assert got == bodies
        await transport.close()
        async with asyncio.timeout(20):
            assert await other.read() is None  # a clean end at a frame boundary
    finally:
        await transport.close()
        await other.close()


def test_stream_transport_round_trip() -> None:
    asyncio.run(_round_trip())


async def _errors() -> None:
    transport, peer = await _pair()
    try:
        # A frame over MAX_FRAME: a clear error, and the connection is dropped.
        await asyncio.get_running_loop().sock_sendall(peer, HEADER.pack(MAX_FRAME + 1))
        with pytest.raises(ConnectionError, match="over the limit"):
            async with asyncio.timeout(20):
                await transport.read()
    finally:
        await transport.close()
        peer.close()
    transport, peer = await _pair()
    try:
        # The peer goes in the middle of a frame.
        await asyncio.get_running_loop().sock_sendall(peer, HEADER.pack(10) + b"abc")
        peer.close()
        with pytest.raises(ConnectionError, match="middle of a frame"):
            async with asyncio.timeout(20):
                await transport.read()
    finally:
        await transport.close()


def test_stream_transport_errors() -> None:
    asyncio.run(_errors())
