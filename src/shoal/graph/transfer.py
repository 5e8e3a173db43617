"""A graph object over a channel: what its holder sends, and how a reader takes it.

The reader opens a channel to the object's endpoint on a node that holds it
(:func:`~shoal.protocol.graph_messages.object_endpoint`), with a grant the
controller issued for that object and that reader. The holder sends one
header message (the object's type and size), then the data, and is done; the
reader closes once it has ``size`` bytes. A holder that cannot serve the object
closes the channel with the reason, which the reader gets as the error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from shoal.channel import AsyncChannel, ChannelError


class TransferError(Exception):
    """An object could not be had from a holder."""


class ObjectHeader(msgspec.Struct, array_like=True):
    """The first message of an object's channel."""

    data_type: str  # "blob" or "dir" (a tar archive)
    size: int


async def send_object(
    channel: AsyncChannel, data_type: str, size: int, chunks: AsyncIterator[bytes]
) -> None:
    """Send an object's header and its data in ``chunks``."""
    await channel.send(msgspec.msgpack.encode(ObjectHeader(data_type, size)))
    async for data in chunks:
        await channel.send(data)


async def read_header(channel: AsyncChannel) -> ObjectHeader:
    """The header of the object ``channel`` brings (TransferError if none came)."""
    try:
        return msgspec.msgpack.decode(await channel.recv(), type=ObjectHeader)
    except ChannelError as exc:
        raise TransferError(str(exc)) from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TransferError(f"{channel.peer} sent a malformed object header: {exc}") from None


async def read_batches(channel: AsyncChannel, header: ObjectHeader) -> AsyncIterator[list[bytes]]:
    """The object's data as it arrives, exactly ``header.size`` bytes of it, in
    batches of what had arrived together: a reader that writes the data out can
    write each batch in one call (one thread hop), while the next one arrives."""
    left = header.size
    try:
        while left > 0:
            batch = await channel.recv_many()
            left -= sum(map(len, batch))
            yield batch
    except ChannelError as exc:
        raise TransferError(str(exc)) from None
    if left < 0:
        raise TransferError(f"{channel.peer} sent more than the {header.size} bytes announced")


async def read_body(channel: AsyncChannel, header: ObjectHeader) -> AsyncIterator[bytes]:
    """The object's data as it arrives, exactly ``header.size`` bytes of it."""
    async for batch in read_batches(channel, header):
        for data in batch:
            yield data


__all__ = [
    "ObjectHeader",
    "TransferError",
    "read_batches",
    "read_body",
    "read_header",
    "send_object",
]
