"""Sending messages through an echo endpoint while a thread reads them back."""

from __future__ import annotations

import threading

from shoal.channel import Channel


def echo_all(channel: Channel, sent: list[bytes], timeout: float = 30) -> list[bytes]:
    """Send ``sent`` on ``channel`` (to ``probe.echo``) with a reader thread taking
    the echoes as they come, so neither side's window fills; what came back."""
    received: list[bytes] = []

    def read() -> None:
        while len(received) < len(sent):
            received.extend(channel.recv_many(timeout=timeout))

    reader = threading.Thread(target=read)
    reader.start()
    for data in sent:
        channel.send(data)
    channel.flush()
    reader.join(2 * timeout)
    assert not reader.is_alive(), f"{len(received)} of {len(sent)} messages came back"
    return received
