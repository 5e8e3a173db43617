"""Unit tests of one channel's short cuts, over a real socket pair: a message sent
while nothing is queued is written from ``send`` itself, frames are dispatched in
the transport's callback, and the blocking face takes arrivals from there. They
must keep the credit, the order and the end exactly as the writer and reader
tasks keep them (tests/test_channel.py covers the whole path between processes).
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from shoal.channel import Channel, ChannelClosed, ChannelProtocolError, Window
from shoal.channel.aio import AsyncChannel
from shoal.channel.sync import _LoopThread
from shoal.channel.transport import StreamTransport
from shoal.protocol import channel_messages as cm
from shoal.protocol.framing import frame
from waiting import wait_until


async def _pair(a_window: Window, b_window: Window) -> tuple[AsyncChannel, AsyncChannel]:
    """Two started channel ends over a Unix socket pair; each may send the other's window."""
    left, right = socket.socketpair()
    ends = []
    for sock, window, peer_window, name in (
        (left, a_window, b_window, "b"),
        (right, b_window, a_window, "a"),
    ):
        transport = await StreamTransport.from_socket(sock)
        ends.append(
            AsyncChannel(
                transport,
                channel_id="c1",
                peer=name,
                path="direct",
                window=window,
                send_credit=(peer_window.messages, peer_window.bytes),
            ).start()
        )
    return ends[0], ends[1]


async def _turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_lone_sends_stay_within_the_credit_and_in_order() -> None:
    async def run() -> None:
        # b grants a 4 messages; it gives credit back after 2 are consumed.
        a, b = await _pair(Window(), Window(messages=4))
        sent = [str(i).encode() for i in range(40)]
        for i, data in enumerate(sent):
            await a.send(data)
            if i % 3 == 0:
                await _turns()  # the queue empties: the next send writes itself
        await _turns()
        received = []
        async with asyncio.timeout(10):
            while len(received) < len(sent):
                # Never more than the credit arrived ahead of the reader.
                assert len(b._incoming) <= 4
                received.append(await b.recv())
                await _turns()
        assert received == sent
        await a.close()
        await b.aclose()

    asyncio.run(run())


def test_a_send_beyond_the_byte_credit_waits_for_it() -> None:
    async def run() -> None:
        a, b = await _pair(Window(), Window(messages=100, bytes=10))
        await a.send(b"12345678")  # within the credit: written from send
        await a.send(b"abcdefgh")  # would overrun: waits for the writer, which sends it
        await _turns()
        async with asyncio.timeout(10):
            assert await b.recv() == b"12345678"
            assert await b.recv() == b"abcdefgh"
        await a.close()
        await b.aclose()

    asyncio.run(run())


def test_a_bad_frame_fails_the_channel_naming_the_peer() -> None:
    async def run() -> None:
        a, b = await _pair(Window(), Window())
        assert isinstance(a._transport, StreamTransport)
        a._transport.write([b"\xc1 not msgpack"])
        async with asyncio.timeout(10):
            with pytest.raises(ChannelProtocolError, match="a sent a bad frame"):
                await b.recv()
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


async def _end(sock: socket.socket) -> AsyncChannel:
    """A channel end on ``sock`` whose peer (the socket's other end) is raw."""
    transport = await StreamTransport.from_socket(sock)
    window = (Window().messages, Window().bytes)
    return AsyncChannel(
        transport, channel_id="c1", peer="a", path="direct", window=Window(), send_credit=window
    ).start()


def test_the_blocking_face_gets_data_that_came_with_the_close() -> None:
    runner = _LoopThread.get()
    peer, mine = socket.socketpair()  # the peer's end is raw: it does not answer the Close

    receiver = Channel(runner.run(_end(mine)), runner)
    try:
        peer.sendall(frame(cm.encode(cm.Data([b"one"]))))
        assert receiver.recv(timeout=10) == b"one"  # the blocking face listens from here on
        # Data and Close in one write: they arrive in one read.
        peer.sendall(frame(cm.encode(cm.Data([b"two", b"three"]))) + frame(cm.encode(cm.Close())))
        assert receiver.recv_many(timeout=10) == [b"two", b"three"]
        with pytest.raises(ChannelClosed, match="peer a closed the channel"):
            receiver.recv(timeout=10)
        receiver.close()
    finally:
        peer.close()


def test_the_blocking_face_offers_arrivals_on_the_loop_only_to_an_idle_receiver() -> None:
    runner = _LoopThread.get()
    peer, mine = socket.socketpair()

    taken: list[bytes] = []

    def take(data: bytes) -> bool:
        if data.startswith(b"quick"):
            taken.append(data)
            return True
        return False

    receiver = Channel(runner.run(_end(mine)), runner)
    receiver.take_on_loop(take)

    def receive_while(sent: bytes) -> list[bytes | BaseException]:
        # recv in a thread; ``sent`` goes once it waits (the receiver is idle).
        got: list[bytes | BaseException] = []

        def receive() -> None:
            try:
                got.extend(receiver.recv_many(timeout=10))
            except ChannelClosed as exc:
                got.append(exc)

        reader = threading.Thread(target=receive)
        reader.start()
        wait_until(lambda: receiver._idle, 10, "the receiver waiting")
        peer.sendall(sent)
        reader.join(10)
        return got

    try:
        # Taken on the loop up to the first it leaves; that one and all after go to recv.
        batch = [b"quick1", b"quick2", b"slow", b"quick3"]
        assert receive_while(frame(cm.encode(cm.Data(batch)))) == [b"slow", b"quick3"]
        assert taken == [b"quick1", b"quick2"]
        # Idle again: quick4 is taken on the loop, and recv sees the end.
        [end_] = receive_while(
            frame(cm.encode(cm.Data([b"quick4"]))) + frame(cm.encode(cm.Close()))
        )
        assert isinstance(end_, ChannelClosed)
        assert taken == [b"quick1", b"quick2", b"quick4"]
        receiver.close()
    finally:
        peer.close()


@pytest.mark.parametrize(
    "sizes",
    [
        [],
        [1],
        [cm.SEND_IN_PLACE - 1],
        [cm.SEND_IN_PLACE],
        [5, 70_000, 3, 1 << 20, 300],
        [1] * 17 + [100_000],
        [1] * 70_000 + [1 << 17],
        [1 << 16] * 20,
    ],
)
def test_large_payloads_are_framed_in_place_exactly_as_msgpack_would(sizes: list[int]) -> None:
    payloads = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    encoded = cm.encode_data(payloads, sum(sizes))
    whole = b"".join(encoded) if isinstance(encoded, tuple) else encoded
    assert whole == cm.encode(cm.Data(payloads))
    assert cm.decode(whole) == cm.Data(payloads)
    if isinstance(encoded, tuple):
        # Each large payload is one of the pieces, the object itself: not copied.
        large = [p for p in payloads if len(p) >= cm.SEND_IN_PLACE]
        assert [p for p in encoded if any(p is q for q in large)] == large


def test_mixed_batches_of_large_and_small_messages_arrive_whole_and_in_order() -> None:
    async def run() -> None:
        a, b = await _pair(Window(), Window())
        sent = [bytes([i]) * (200_000 if i % 3 == 0 else i + 1) for i in range(60)]
        await a.send_many(sent)
        received = []
        async with asyncio.timeout(20):
            while len(received) < len(sent):
                received.extend(await b.recv_many())
        assert received == sent
        await a.close()
        await b.aclose()

    asyncio.run(run())
