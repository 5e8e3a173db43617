"""The relay's two ways of forwarding: spliced connections (both ends ask for
``STREAM_SUBPROTOCOL``) and WebSocket messages (an opener that does not ask).

The behaviour of relayed channels (order, back-pressure, lost peers, refusals,
revocation) is tested over the relay in test_channel.py; these are the edges of
the hand-over itself, against a real controller and a ``--no-data-server`` agent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

from processes import start_agent
from shoal import LocalCluster
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
