"""Unit tests of how one channel end closes, over a real socket pair (the whole
path between processes: tests/test_channel.py)."""

from __future__ import annotations

import asyncio

import pytest

from shoal.channel import ChannelClosed, ChannelError, ChannelLost, Window
from test_channel_fast_path import _pair


@pytest.mark.timeout(30)
def test_a_close_under_way_still_reaches_the_peer_when_the_end_is_dropped() -> None:
    """The race behind a CI failure: an agent closes a revoked token's channel
    while the endpoint's handler, seeing its channel end, returns; the server
    then drops the channel (aclose). The peer must get the reason, not a lost
    connection."""

    async def run() -> None:
        a, b = await _pair(Window(), Window())
        closing = asyncio.create_task(a.close("the token it was opened with was revoked"))
        await asyncio.sleep(0)  # close() began; its Close is not written yet
        with pytest.raises(ChannelClosed):
            await a.send(b"echo")  # what the handler does next: it learns of the end
        await a.aclose()
        with pytest.raises(ChannelError) as raised:
            async with asyncio.timeout(10):
                await b.recv()
        assert isinstance(raised.value, ChannelLost)
        assert str(raised.value) == (
            "peer a closed the channel: the token it was opened with was revoked"
        )
        await closing
        await b.aclose()

    asyncio.run(run())
