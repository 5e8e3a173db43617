"""The Channel: the same tests over the direct path and through the controller's relay.

A real controller and real agents: ``direct-1`` serves channels on its own
listener; ``relay-1`` runs ``--no-data-server`` (a node peers cannot reach), so
its channels go through the controller. The tests talk to the agents' built-in
probe endpoints (shoal.agent.channel_probes).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil
import pytest

from channel_echo import echo_all
from processes import start_agent, stop_all
from shoal import LocalCluster
from shoal.channel import Channel, ChannelClosed, ChannelError, ChannelRefused
from shoal.channel.connect import request_grant
from shoal.channel.sync import _LoopThread

NODES = {"direct": "direct-1", "relay": "relay-1"}
RELAY_ONLY = ("--no-data-server",)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    logs = tmp_path_factory.mktemp("channel-agents")
    with LocalCluster([NODES["direct"]]) as c:
        relay = start_agent(
            c.endpoint, c.agent_token, NODES["relay"], logs / "relay.log", *RELAY_ONLY
        )
        c.agents[NODES["relay"]] = relay  # stopped with the cluster
        c.client().wait_for_nodes([NODES["relay"]], 30)
        yield c


@pytest.fixture(scope="module")
def token(cluster: LocalCluster) -> str:
    return cluster.client().token()


@pytest.fixture(params=sorted(NODES))
def path(request: pytest.FixtureRequest) -> str:
    return request.param


def probe(cluster: LocalCluster, token: str, path: str, endpoint: str) -> Channel:
    channel = Channel.connect(cluster.endpoint, token, NODES[path], endpoint)
    assert channel.path == path
    return channel


def grant(cluster: LocalCluster, token: str, node: str, endpoint: str):  # type: ignore[no-untyped-def]
    return _LoopThread.get().run(request_grant(cluster.endpoint, token, node, endpoint))


@pytest.mark.timeout(60)
def test_messages_arrive_in_order(cluster: LocalCluster, token: str, path: str) -> None:
    sent = [i.to_bytes(4, "big") * (1 + i % 50) for i in range(100_000)]
    with probe(cluster, token, path, "probe.echo") as channel:
        assert echo_all(channel, sent, timeout=20) == sent


@pytest.mark.timeout(120)
def test_a_slow_reader_holds_back_the_writer(cluster: LocalCluster, token: str, path: str) -> None:
    """1 GiB from the node while the reader stops for 2 s: no process grows by it."""
    size, count = 64 * 1024, 16 * 1024  # 1 GiB
    procs = {"agent": psutil.Process(cluster.agents[NODES[path]].pid), "reader": psutil.Process()}
    if path == "relay":
        assert cluster.controller is not None
        procs["controller"] = psutil.Process(cluster.controller.proc.pid)
    base = {name: p.memory_info().rss for name, p in procs.items()}
    peak = dict(base)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for name, p in procs.items():
                peak[name] = max(peak[name], p.memory_info().rss)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with probe(cluster, token, path, "probe.source") as channel:
            channel.send(msgspec.msgpack.encode([count, size]))
            channel.flush()
            index = 0
            for data in channel:
                assert int.from_bytes(data[:8], "big") == index and len(data) == size
                index += 1
                if index == 100:
                    time.sleep(2)  # the deliberate pause of a slow reader
            assert index == count
    finally:
        stop.set()
        watcher.join()
    grown = {name: (peak[name] - base[name]) / 2**20 for name in procs}
    # The window is 16 MiB; without flow control the 1 GiB would pile up somewhere.
    assert all(mib < 100 for mib in grown.values()), f"grew (MiB): {grown}"


@pytest.mark.timeout(90)
def test_a_killed_peer_is_named_promptly(
    cluster: LocalCluster, token: str, path: str, tmp_path: Path
) -> None:
    name = f"victim-{path}"
    extra = RELAY_ONLY if path == "relay" else ()
    victim = start_agent(
        cluster.endpoint, cluster.agent_token, name, tmp_path / "victim.log", *extra
    )
    try:
        cluster.client().wait_for_nodes([name], 30)
        channel = Channel.connect(cluster.endpoint, token, name, "probe.echo")
        assert channel.path == path
        for i in range(1000):
            channel.send(b"%d" % i)
        channel.flush()
        got = 0
        while got < 1000:
            got += len(channel.recv_many(timeout=10))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        started = time.monotonic()
        with pytest.raises(ChannelError, match=f"connection to {name} lost") as caught:
            while True:
                channel.send(b"more")
                channel.recv(timeout=5)
        assert time.monotonic() - started < 5
        assert not isinstance(caught.value, ChannelClosed)
        channel.close()
    finally:
        stop_all([victim])


@pytest.mark.timeout(60)
def test_closing_with_data_in_flight_loses_nothing(
    cluster: LocalCluster, token: str, path: str
) -> None:
    """The source closes the moment its last message is queued; all of it arrives first."""
    count = 200_000
    with probe(cluster, token, path, "probe.source") as channel:
        channel.send(msgspec.msgpack.encode([count, 16]))
        channel.flush()
        indices = [int.from_bytes(data[:8], "big") for data in channel]
        assert indices == list(range(count))
        with pytest.raises(ChannelClosed, match=f"peer {NODES[path]} closed the channel"):
            channel.recv(timeout=5)


@pytest.mark.timeout(60)
def test_a_capability_opens_only_its_own_channel(
    cluster: LocalCluster, token: str, path: str
) -> None:
    node = NODES[path]
    echo, other = (
        grant(cluster, token, node, "probe.echo"),
        grant(cluster, token, node, "probe.echo"),
    )
    forged = msgspec.structs.replace(echo, channel=other.channel)
    with pytest.raises(
        ChannelRefused, match=f"for channel '{echo.channel}', not '{other.channel}'"
    ):
        Channel.open(forged, cluster.endpoint, token)
    elsewhere = msgspec.structs.replace(echo, endpoint="probe.sink")
    wrong_endpoint = re.escape("for endpoint 'probe.echo', not 'probe.sink'")
    with pytest.raises(ChannelRefused, match=wrong_endpoint):
        Channel.open(elsewhere, cluster.endpoint, token)
    with Channel.open(echo, cluster.endpoint, token) as channel:  # the real one opens
        channel.send(b"ok")
        assert channel.recv(timeout=10) == b"ok"


@pytest.mark.timeout(60)
def test_a_capability_opens_only_for_its_user(cluster: LocalCluster, token: str, path: str) -> None:
    from processes import add_user

    add_user(cluster.db_url, "mallory", "mallory-pw")
    mallory = cluster.client("mallory", "mallory-pw").token()
    alices = grant(cluster, token, NODES[path], "probe.echo")
    claimed = msgspec.structs.replace(alices, opener="user:mallory")
    with pytest.raises(ChannelRefused, match="for opener 'user:shoal', not 'user:mallory'"):
        Channel.open(claimed, cluster.endpoint, mallory)


@pytest.mark.timeout(60)
def test_a_revoked_token_closes_its_channels(cluster: LocalCluster, token: str, path: str) -> None:
    """Logging out ends the channels the token opened (direct ones too), and no other's."""
    import httpx

    doomed = cluster.client().token()
    assert doomed != token
    kept = probe(cluster, token, path, "probe.echo")
    channel = probe(cluster, doomed, path, "probe.echo")
    for one in (kept, channel):
        one.send(b"hello")
        assert one.recv(timeout=10) == b"hello"
    answer = httpx.post(
        f"{cluster.endpoint}/api/logout", headers={"Authorization": f"Bearer {doomed}"}
    )
    assert answer.status_code < 300, answer.text
    # Direct: the node closes it; relayed: the controller may close its WebSocket first.
    with pytest.raises(ChannelError, match="revoked"):
        while True:
            channel.send(b"more")
            channel.recv(timeout=10)
    kept.send(b"still here")
    assert kept.recv(timeout=10) == b"still here"
    kept.close()
