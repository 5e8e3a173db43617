"""Who may open which channel, through the controller's relay (what the old named
relay channels, ``ChannelListener``/``connect_channel``, guaranteed, on the
Channel that replaced them).

A real controller and agent. A channel opens with a grant the controller
issued to one opener (a user, or one deployment of the user's: an executor's
token), so channels are private to their user, and an executor opens them as
its own deployment only. Channels here are forced through the relay (a grant
with no direct address), the path of peers that cannot meet.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator

import pytest

from leak import RELEASE, steal_executor_token
from processes import add_user
from relayed import relayed_grant
from shoal import FlagValues, LocalCluster
from shoal.channel import Channel, ChannelError, ChannelRefused

NODE = "ch-1"
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([NODE]) as c:
        add_user(c.db_url, "eve", "eve-pw")
        yield c


def relayed(cluster: LocalCluster, token: str, endpoint: str = "probe.echo"):  # type: ignore[no-untyped-def]
    return relayed_grant(cluster.endpoint, token, NODE, endpoint)


@pytest.mark.timeout(60)
def test_bytes_travel_both_ways_intact(cluster: LocalCluster) -> None:
    token = cluster.client().token()
    payload = hashlib.sha256(b"seed").digest() * 200_000  # 6.4 MB
    with Channel.open(relayed(cluster, token), cluster.endpoint, token) as channel:
        assert channel.path == "relay"
        channel.send_many(payload[i : i + CHUNK] for i in range(0, len(payload), CHUNK))
        echoed = b""
        while len(echoed) < len(payload):
            echoed += b"".join(channel.recv_many(timeout=20))
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()


@pytest.mark.timeout(60)
def test_an_endpoint_nobody_serves_is_refused_at_once(cluster: LocalCluster) -> None:
    token = cluster.client().token()
    started = time.monotonic()
    with pytest.raises(ChannelRefused, match=re.escape("has no endpoint 'nobody.serves'")):
        Channel.open(relayed(cluster, token, "nobody.serves"), cluster.endpoint, token)
    assert time.monotonic() - started < 5


@pytest.mark.timeout(60)
def test_channels_are_private_to_their_user(cluster: LocalCluster) -> None:
    alice = cluster.client().token()
    eve = cluster.client("eve", "eve-pw").token()
    alices = relayed(cluster, alice)
    with pytest.raises(ChannelRefused, match="this token stands for user:eve, not user:"):
        Channel.open(alices, cluster.endpoint, eve)
    with pytest.raises(ChannelError, match=r"401|token"):
        Channel.connect(cluster.endpoint, "not-a-token", NODE, "probe.echo")


@pytest.mark.timeout(90)
def test_an_executor_opens_channels_as_its_own_deployment_only(cluster: LocalCluster) -> None:
    client = cluster.client()
    user = client.token()
    executor = steal_executor_token(client, "chan-exp")
    try:
        theirs = relayed(cluster, executor)
        login = theirs.opener.split("/")[0]
        # Its grant names its deployment: the endpoint sees who opened it.
        assert theirs.opener.startswith(f"{login}/deployment:"), theirs.opener
        with Channel.open(theirs, cluster.endpoint, executor) as channel:
            channel.send(b"from the executor")
            assert channel.recv(timeout=10) == b"from the executor"
        # Neither stands in for the other: not the user for the deployment,
        # nor the deployment for its user.
        with pytest.raises(ChannelRefused, match="this token stands for"):
            Channel.open(relayed(cluster, user), cluster.endpoint, executor)
        with pytest.raises(ChannelRefused, match="this token stands for"):
            Channel.open(relayed(cluster, executor), cluster.endpoint, user)
    finally:
        client.set_flag_values("chan-exp", RELEASE, FlagValues("go", 1))
        client.wait("chan-exp", timeout=30)
