"""Built-in endpoints for probing the channel path to a node (tests, benchmarks,
an operator checking a node's reach): echo, sink and source, like the
diagnostic services of old (RFC 862, 863, 864), over a Channel.

- ``probe.echo``: every message comes back, in order.
- ``probe.sink``: messages are counted and dropped; an empty message asks for
  the count so far, answered as msgpack ``[messages, bytes]`` (the empty ones
  not counted).
- ``probe.source``: the first message is msgpack ``[count, size]``; that many
  messages of that size come back (each starting with its 8-byte big-endian
  index), then a clean close.
"""

from __future__ import annotations

import msgspec

from shoal.agent.channel_server import ChannelServer
from shoal.channel.aio import AsyncChannel
from shoal.channel.errors import ChannelClosed, ChannelProtocolError

SOURCE_LIMIT = 1 << 40  # bytes a source sends at most: a probe, not a way to burn a node
SOURCE_BATCH = 256


async def echo(channel: AsyncChannel) -> None:
    while True:
        try:
            batch = await channel.recv_many()
        except ChannelClosed:
            return
        await channel.send_many(batch)


async def sink(channel: AsyncChannel) -> None:
    messages = size = 0
    while True:
        try:
            batch = await channel.recv_many()
        except ChannelClosed:
            return
        for data in batch:
            if data:
                messages += 1
                size += len(data)
            else:
                await channel.send(msgspec.msgpack.encode([messages, size]))


async def source(channel: AsyncChannel) -> None:
    try:
        count, size = msgspec.msgpack.decode(await channel.recv(), type=tuple[int, int])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChannelProtocolError(f"probe.source wants [count, size]: {exc}") from None
    if count < 0 or not 8 <= size <= 64 * 1024 * 1024 or count * size > SOURCE_LIMIT:
        raise ChannelProtocolError(f"probe.source cannot send {count} messages of {size} bytes")
    filler = bytes(size - 8)
    sent = 0
    while sent < count:
        n = min(SOURCE_BATCH, count - sent)
        await channel.send_many([(sent + i).to_bytes(8, "big") + filler for i in range(n)])
        sent += n


def register_probes(server: ChannelServer) -> None:
    """Serve the probe endpoints on ``server``."""
    server.register("probe.echo", echo)
    server.register("probe.sink", sink)
    server.register("probe.source", source)


__all__ = ["register_probes"]
