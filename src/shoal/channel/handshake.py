"""Opening a channel on a transport: ``Open``, then ``Accept`` or ``Refuse``.

The same two functions serve both paths: on the direct path the transport is a
TCP connection to the target agent's channel server; on the relay path it is a
WebSocket to the controller, which forwards the frames to the target.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec

from shoal.channel.aio import AsyncChannel
from shoal.channel.errors import (
    ChannelError,
    ChannelLost,
    ChannelProtocolError,
    ChannelRefused,
    ChannelTimeout,
)
from shoal.channel.flow import DEFAULT_WINDOW, Window
from shoal.channel.transport import Transport
from shoal.protocol import channel_messages as cm

OPEN_TIMEOUT = 10.0


def open_request(grant: cm.ChannelGrant, window: Window = DEFAULT_WINDOW) -> cm.Open:
    """The ``Open`` that opens the channel ``grant`` describes, offering ``window``."""
    return cm.Open(
        channel=grant.channel,
        capability=grant.capability,
        node=grant.node,
        endpoint=grant.endpoint,
        opener=grant.opener,
        credit_messages=window.messages,
        credit_bytes=window.bytes,
    )


async def _first_frames(transport: Transport, timeout: float, peer: str) -> list[bytes]:
    try:
        async with asyncio.timeout(timeout):
            bodies = await transport.read()
    except TimeoutError:
        raise ChannelTimeout(f"{peer} did not answer within {timeout:g} s", peer=peer) from None
    except OSError as exc:
        raise ChannelLost(f"connection to {peer} lost: {exc}", peer=peer) from None
    if not bodies:
        raise ChannelLost(f"connection to {peer} lost before it answered", peer=peer)
    return bodies


async def open_on(
    transport: Transport,
    request: cm.Open,
    *,
    path: str,
    window: Window = DEFAULT_WINDOW,
    timeout: float = OPEN_TIMEOUT,
    sent: bool = False,
) -> AsyncChannel:
    """Send ``request`` on ``transport`` (unless it was ``sent`` another way) and
    wait for the answer; the open channel.

    Raises ChannelRefused with the target's reason, or ChannelError. The
    transport is closed on failure.
    """
    peer = f"node {request.node}"
    try:
        if not sent:
            await transport.send([cm.encode(request)])
        bodies = await _first_frames(transport, timeout, peer)
        try:
            answer = cm.decode(bodies[0])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ChannelProtocolError(f"{peer} answered with a bad frame: {exc}") from None
        if isinstance(answer, cm.Refuse):
            raise ChannelRefused(
                f"{peer} refused channel {request.channel} to {request.endpoint!r}: "
                f"{answer.reason}",
                peer=request.node,
            )
        if not isinstance(answer, cm.Accept):
            raise ChannelProtocolError(f"{peer} answered Open with {type(answer).__name__}")
    except BaseException:
        await transport.close()
        raise
    return AsyncChannel(
        transport,
        channel_id=request.channel,
        peer=request.node,
        path=path,
        window=window,
        send_credit=(answer.credit_messages, answer.credit_bytes),
        endpoint=request.endpoint,
        pending=bodies[1:],
    ).start()


async def read_open(transport: Transport, timeout: float = OPEN_TIMEOUT) -> cm.Open:
    """The Open a new connection starts with; raises ChannelError if it does not."""
    bodies = await _first_frames(transport, timeout, "the opener")
    try:
        request = cm.decode(bodies[0])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChannelProtocolError(f"a bad first frame: {exc}") from None
    if not isinstance(request, cm.Open) or len(bodies) > 1:
        raise ChannelProtocolError("a channel must start with Open, alone")
    if request.version != cm.CHANNEL_PROTOCOL:
        raise ChannelRefused(
            f"channel protocol {request.version} is not spoken here ({cm.CHANNEL_PROTOCOL} is)"
        )
    return request


async def accept_on(
    transport: Transport,
    request: cm.Open,
    *,
    path: str,
    check: Callable[[cm.Open], Awaitable[str] | str],
    window: Window = DEFAULT_WINDOW,
) -> AsyncChannel | None:
    """Answer ``request``: Refuse if ``check`` gives a reason (and close; None), else
    Accept; the open channel, whose peer is the opener."""
    outcome = check(request)
    reason = outcome if isinstance(outcome, str) else await outcome
    if reason:
        with contextlib.suppress(OSError):  # the opener may be gone already
            await transport.send([cm.encode(cm.Refuse(reason))])
        await transport.close()
        return None
    try:
        await transport.send([cm.encode(cm.Accept(window.messages, window.bytes))])
    except OSError as exc:
        await transport.close()
        raise ChannelLost(f"connection to {request.opener} lost: {exc}") from None
    return AsyncChannel(
        transport,
        channel_id=request.channel,
        peer=request.opener,
        path=path,
        window=window,
        send_credit=(request.credit_messages, request.credit_bytes),
        endpoint=request.endpoint,
    ).start()


__all__ = ["ChannelError", "accept_on", "open_on", "open_request", "read_open"]
