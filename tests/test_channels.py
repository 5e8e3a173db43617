"""Channels: byte streams the controller relays between peers that cannot meet."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import pytest

from shoal import LocalCluster
from shoal.client.channels import ChannelError, ChannelListener, connect_channel


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(["ch-1"]) as c:
        yield c


def read_exactly(sock, size: int) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while len(data) < size:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.timeout(60)
def test_bytes_travel_both_ways_intact(cluster: LocalCluster) -> None:
    token = cluster.client().token()
    payload = hashlib.sha256(b"seed").digest() * 200_000  # 6.4 MB
    listener = ChannelListener(cluster.endpoint, token, "echo")
    echoed = threading.Event()

    def echo() -> None:
        peer = listener.accept()
        data = read_exactly(peer, len(payload))
        peer.sendall(hashlib.sha256(data).digest())
        peer.close()
        echoed.set()

    threading.Thread(target=echo, daemon=True).start()
    sock = connect_channel(cluster.endpoint, token, "echo")
    sock.sendall(payload)
    assert read_exactly(sock, 32) == hashlib.sha256(payload).digest()
    assert echoed.wait(10)
    assert sock.recv(1) == b""  # the peer's close reaches us
    sock.close()
    listener.close()


@pytest.mark.timeout(60)
def test_connecting_to_nobody_fails_at_once(cluster: LocalCluster) -> None:
    token = cluster.client().token()
    with pytest.raises(ChannelError, match="403"):
        connect_channel(cluster.endpoint, token, "nobody-listens")


@pytest.mark.timeout(60)
def test_channels_are_private_to_their_user(cluster: LocalCluster) -> None:
    from processes import add_user

    add_user(cluster.db_url, "eve", "eve-pw")
    listener = ChannelListener(cluster.endpoint, cluster.client().token(), "private")
    eve = cluster.client("eve", "eve-pw").token()
    with pytest.raises(ChannelError, match="403"):
        connect_channel(cluster.endpoint, eve, "private")
    with pytest.raises(ChannelError):
        connect_channel(cluster.endpoint, "not-a-token", "private")
    listener.close()
