"""The relay's two ways of forwarding: spliced connections (both ends ask for
``STREAM_SUBPROTOCOL``) and WebSocket messages (an opener that does not ask).

The behaviour of relayed channels (order, back-pressure, lost peers, refusals,
revocation) is tested over the relay in test_channel.py; these are the edges of
the hand-over itself, against a real controller and a ``--no-data-server`` agent.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import psutil
import pytest
from websockets.asyncio.client import connect as ws_connect

from channel_echo import echo_all
from processes import start_agent, stop_all
from scraped import metric_value
from shoal import LocalCluster
from shoal.channel import Channel, ChannelError
from shoal.channel.connect import (
    RELAY_PATH,
    RELAY_WEBSOCKET,
    STREAM_SUBPROTOCOL,
    relay_stream,
    request_grant,
    ws_url,
)
from shoal.channel.handshake import open_on, open_request
from shoal.channel.sync import _LoopThread
from shoal.channel.transport import WEBSOCKET_OPTIONS, WebSocketTransport
from shoal.controller.relay_splice import _Frames
from shoal.protocol import channel_messages as cm
from shoal.protocol.framing import frame
from waiting import wait_until

NODE = "relay-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    logs: Path = tmp_path_factory.mktemp("relay-agents")
    with LocalCluster([]) as c:
        c.agents[NODE] = start_agent(
            c.endpoint, c.agent_token, NODE, logs / "relay.log", "--no-data-server"
        )
        c.client().wait_for_nodes([NODE], 30)
        yield c


@pytest.fixture(scope="module")
def token(cluster: LocalCluster) -> str:
    return cluster.client().token()


@pytest.mark.timeout(60)
def test_an_opener_without_the_stream_subprotocol_is_relayed_by_messages(
    cluster: LocalCluster, token: str
) -> None:
    """A client of an earlier release (one WebSocket message per frame) still works."""

    async def echo() -> list[bytes]:
        grant = await request_grant(cluster.endpoint, token, NODE, "probe.echo")
        ws = await ws_connect(
            ws_url(cluster.endpoint, RELAY_PATH),
            additional_headers={"Authorization": f"Bearer {token}"},
            **WEBSOCKET_OPTIONS,
        )
        assert ws.subprotocol is None
        channel = await open_on(WebSocketTransport(ws), open_request(grant), path="relay")
        async with channel:
            sent = [bytes([i]) * (1 + i * 4099) for i in range(40)]
            for data in sent:
                await channel.send(data)
            return [await channel.recv() for _ in sent]

    got = _LoopThread.get().run(echo())
    assert got == [bytes([i]) * (1 + i * 4099) for i in range(40)]


@pytest.mark.timeout(60)
def test_a_spliced_opener_gets_its_refusal_as_a_frame(cluster: LocalCluster, token: str) -> None:
    """Once the opener asked for the stream, even the controller's refusal is a
    length-prefixed frame on the connection, not a WebSocket message."""

    async def junk_open() -> cm.ChannelMessage:
        ws = await ws_connect(
            ws_url(cluster.endpoint, RELAY_PATH),
            additional_headers={"Authorization": f"Bearer {token}"},
            **RELAY_WEBSOCKET,
        )
        assert ws.subprotocol == STREAM_SUBPROTOCOL
        await ws.send(b"not an Open")
        stream = relay_stream(ws)
        try:
            bodies = await stream.read()
            assert bodies, "the controller closed without answering"
            return cm.decode(bytes(bodies[0]))
        finally:
            await stream.close()

    answer = _LoopThread.get().run(junk_open())
    assert isinstance(answer, cm.Refuse)
    assert "must start with Open" in answer.reason


def test_the_splice_follows_frame_boundaries_whatever_the_chunks() -> None:
    """Unit test of the splice's frame cursor: random bodies, cut at random places."""
    rng = random.Random(14)
    bodies = [rng.randbytes(rng.choice([0, 1, 3, 4, 5, 100, 70_000])) for _ in range(300)]
    stream = b"".join(frame(body) for body in bodies)
    ends = set()
    at = 0
    for body in bodies:
        at += 4 + len(body)
        ends.add(at)
    for _ in range(20):
        cursor = _Frames()
        pos = 0
        while pos < len(stream):
            step = rng.choice([1, 2, 3, 5, 4096, 65536, 300_000])
            cursor.passed(stream[pos : pos + step])
            pos = min(pos + step, len(stream))
            assert cursor.at_boundary() == (pos in ends), pos
        assert cursor.count == len(bodies)


def zero_copied(cluster: LocalCluster, token: str) -> float:
    """The controller's count of relayed bytes the kernel moved (its /metrics)."""
    return metric_value(cluster.endpoint, token, "shoal_channel_zero_copy_bytes_total")


@pytest.mark.timeout(90)
def test_large_frames_move_in_the_kernel_and_arrive_whole(
    cluster: LocalCluster, token: str
) -> None:
    """Big messages among small ones, both ways through a spliced relay: every
    byte comes back in order, and the bodies of the big ones were moved by the
    kernel (plain TCP on Linux), not copied through the controller."""
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 17, 4096, 70_000, 300_000, 1 << 20, 3 << 20]) for _ in range(120)]
    sent = [rng.randbytes(size) for size in sizes]
    before = zero_copied(cluster, token)
    with Channel.connect(cluster.endpoint, token, NODE, "probe.echo") as channel:
        assert channel.path == "relay"
        received = echo_all(channel, sent)
    assert [len(d) for d in received] == sizes
    assert received == sent
    large = sum(size for size in sizes if size >= 1 << 20)
    assert zero_copied(cluster, token) - before >= large  # there and back: twice that at most


@pytest.mark.timeout(90)
def test_a_stream_of_large_frames_stays_in_the_kernel(cluster: LocalCluster, token: str) -> None:
    """Once one large frame moves in the kernel, the next ones, headers and all,
    follow it there: not even their first bytes come up through the controller
    (each frame's first read did, a quarter of a 1 MiB message, before)."""
    before = zero_copied(cluster, token)
    block = random.Random(3).randbytes(1 << 20)
    with Channel.connect(cluster.endpoint, token, NODE, "probe.sink") as channel:
        assert channel.path == "relay"
        for _ in range(100):
            channel.send(block)
        channel.send(b"")  # asks for the count
        channel.flush()
        assert msgspec.msgpack.decode(channel.recv()) == [100, 100 << 20]
    assert zero_copied(cluster, token) - before > 0.9 * (100 << 20)


def _controller_fds(cluster: LocalCluster) -> int:
    assert cluster.controller is not None
    return psutil.Process(cluster.controller.proc.pid).num_fds()


def _stream_until_cut(channel: Channel, cut: Callable[[], None]) -> tuple[int, float]:
    """Read a node's stream of 64 KiB messages, ``cut`` it after 50 of them and
    read on until the channel fails; messages read, and seconds from the cut."""
    channel.send(msgspec.msgpack.encode([1 << 20, 64 * 1024]))  # 64 GiB: never ends
    channel.flush()
    index = 0
    cut_at = 0.0
    with pytest.raises(ChannelError):
        for data in channel:
            assert int.from_bytes(data[:8], "big") == index
            index += 1
            if index == 50:
                cut()
                cut_at = time.monotonic()
    return index, time.monotonic() - cut_at


@pytest.mark.timeout(90)
def test_a_peer_killed_mid_frame_is_heard_and_nothing_is_left_held(
    cluster: LocalCluster, token: str, tmp_path: Path
) -> None:
    """The node dies while a frame's body is moving in the kernel: the reader's
    channel fails promptly, and the controller closes what it used for the move."""
    name = "victim-zero-copy"
    victim = start_agent(
        cluster.endpoint, cluster.agent_token, name, tmp_path / "victim.log", "--no-data-server"
    )
    try:
        cluster.client().wait_for_nodes([name], 30)
        held = _controller_fds(cluster)  # with the victim's own connection
        with Channel.connect(cluster.endpoint, token, name, "probe.source") as channel:
            assert channel.path == "relay"
            read, took = _stream_until_cut(channel, lambda: victim.send_signal(signal.SIGKILL))
        assert read >= 50 and took < 5
        # Its channel's two connections and the node's own are gone, and with them
        # the pipe and the duplicates a move holds.
        wait_until(lambda: _controller_fds(cluster) < held, 15, "the controller's fds freed")
    finally:
        stop_all([victim])


@pytest.mark.timeout(90)
def test_revoking_the_token_mid_frame_ends_the_channel(cluster: LocalCluster, token: str) -> None:
    doomed = cluster.client().token()
    held = _controller_fds(cluster)

    def logout() -> None:
        answer = httpx.post(
            f"{cluster.endpoint}/api/logout", headers={"Authorization": f"Bearer {doomed}"}
        )
        assert answer.status_code < 300, answer.text

    with Channel.connect(cluster.endpoint, doomed, NODE, "probe.source") as channel:
        assert channel.path == "relay"
        read, took = _stream_until_cut(channel, logout)
    assert read >= 50 and took < 5
    wait_until(lambda: _controller_fds(cluster) <= held, 15, "the controller's fds freed")
    # The node is still there for channels of tokens that are valid.
    with Channel.connect(cluster.endpoint, token, NODE, "probe.echo") as channel:
        channel.send(b"after")
        assert channel.recv(timeout=10) == b"after"
