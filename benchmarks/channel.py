"""Channels, direct and through the controller, against a raw loopback TCP socket.

Sends the same messages three ways from this process to another one and
times them from the first send to the receiver's count of all of them:

- raw: a loopback TCP socket to a child process, each message length-prefixed
  and written on its own through a buffered writer, read back one at a time
  (the limit a Python program meets with a plain socket);
- a Channel to the ``probe.sink`` endpoint of an agent that serves channels
  itself (the direct path), one ``send`` call per message, both faces;
- the same to an agent run ``--no-data-server`` (reached through the relay).

Prints messages/s for small messages, MB/s for 1 MiB ones, and the ratios
(issue 14's targets: at least 1M small messages/s, within 1.5x of the raw
socket; the relay at most 2x slower than the direct path).

Also prints the CPU time each path costs, summed over the processes it runs
through (this one, the agent, and for the relay the controller): a figure that
a busy machine disturbs less than the wall-clock rates. ``--small 0`` or
``--large 0`` leaves that size out.

    python benchmarks/channel.py [--small 2000000] [--large 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import subprocess
import sys
import time

import msgspec
import psutil
from common import machine

from shoal import LocalCluster
from shoal.channel import AsyncChannel, Channel, connect
from shoal.protocol.framing import HEADER

SMALL = b"0123456789abcdef"  # 16 bytes
LARGE = bytes(1024 * 1024)
TARGET_RATE = 1_000_000
TARGET_RAW_RATIO = 1.5
TARGET_RELAY_RATIO = 2.0


def _raw_receiver(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reader = sock.makefile("rb", buffering=1 << 16)
        count = 0
        while True:
            (size,) = HEADER.unpack(reader.read(4))
            if size == 0:
                break
            reader.read(size)
            count += 1
        sock.sendall(count.to_bytes(8, "big"))


def raw_socket(payload: bytes, count: int) -> float:
    """Seconds to move ``count`` messages over a loopback socket to a child process."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        receiver = multiprocessing.get_context("spawn").Process(
            target=_raw_receiver, args=(server.getsockname()[1],)
        )
        receiver.start()
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = conn.makefile("wb", buffering=1 << 16)
        started = time.perf_counter()
        for _ in range(count):
            out.write(HEADER.pack(len(payload)) + payload)
        out.write(HEADER.pack(0))
        out.flush()
        got = int.from_bytes(conn.recv(8), "big")
        seconds = time.perf_counter() - started
        conn.close()
        receiver.join()
    assert got == count, (got, count)
    return seconds


def _counted(reply: bytes, count: int, payload: bytes) -> None:
    messages, size = msgspec.msgpack.decode(reply)
    assert (messages, size) == (count, count * len(payload)), (messages, size)


def sync_channel(channel: Channel, payload: bytes, count: int) -> float:
    """Seconds to send ``count`` messages with Channel.send, until the sink counted them."""
    started = time.perf_counter()
    for _ in range(count):
        channel.send(payload)
    channel.send(b"")
    channel.flush()
    _counted(channel.recv(timeout=600), count, payload)
    return time.perf_counter() - started


async def async_channel(channel: AsyncChannel, payload: bytes, count: int) -> float:
    """The same with AsyncChannel.send."""
    started = time.perf_counter()
    for _ in range(count):
        await channel.send(payload)
    await channel.send(b"")
    _counted(await channel.recv(), count, payload)
    return time.perf_counter() - started


def measure(endpoint: str, token: str, node: str, payload: bytes, count: int) -> dict[str, float]:
    """Seconds per face to ``node``'s sink; checks the path is the one expected."""
    with Channel.connect(endpoint, token, node, "probe.sink") as channel:
        path = channel.path
        sync_seconds = sync_channel(channel, payload, count)

    async def run() -> float:
        async with await connect(endpoint, token, node, "probe.sink") as channel:
            return await async_channel(channel, payload, count)

    return {"path": path, "sync": sync_seconds, "async": asyncio.run(run())}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2_000_000, help="16-byte messages")
    parser.add_argument("--large", type=int, default=1024, help="1 MiB messages")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with LocalCluster(["direct-1"]) as cluster:
        agent = ["--controller", cluster.endpoint, "--name", "relay-1", "--no-data-server"]
        agent += ["--token-file", str(cluster.token_file)]
        agent += ["--workdir", str(cluster.workdir / "agents" / "relay-1")]
        relay = subprocess.Popen(
            [sys.executable, "-m", "shoal", "agent", *agent],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cluster.agents["relay-1"] = relay  # stopped with the cluster
        client = cluster.client()
        client.wait_for_nodes(["relay-1"], 60)
        token = client.token()
        assert cluster.controller is not None
        print(f"controller pid: {cluster.controller.proc.pid}")
        me = psutil.Process()
        controller = psutil.Process(cluster.controller.proc.pid)
        processes = {
            "direct-1": [me, psutil.Process(cluster.agents["direct-1"].pid)],
            "relay-1": [me, psutil.Process(relay.pid), controller],
        }
        if args.small:
            report(cluster.endpoint, token, "small", SMALL, args.small, processes)
        if args.large:
            report(cluster.endpoint, token, "large", LARGE, args.large, processes)


def _cpu(processes: list[psutil.Process]) -> list[float]:
    return [sum(process.cpu_times()[:2]) for process in processes]


def _measured(
    endpoint: str, token: str, node: str, payload: bytes, count: int, cpu: list[psutil.Process]
) -> tuple[dict[str, float], list[float]]:
    """:func:`measure`, and the CPU seconds each of ``cpu`` spent meanwhile."""
    before = _cpu(cpu)
    seconds = measure(endpoint, token, node, payload, count)
    return seconds, [after - b for after, b in zip(_cpu(cpu), before, strict=True)]


def report(
    endpoint: str,
    token: str,
    kind: str,
    payload: bytes,
    count: int,
    processes: dict[str, list[psutil.Process]],
) -> None:
    raw = raw_socket(payload, count)
    direct, direct_cpu = _measured(
        endpoint, token, "direct-1", payload, count, processes["direct-1"]
    )
    relayed, relay_cpu = _measured(endpoint, token, "relay-1", payload, count, processes["relay-1"])
    assert direct["path"] == "direct" and relayed["path"] == "relay", (direct, relayed)
    if kind == "small":
        unit, scale = "msg/s", count
        print(f"{count:,} messages of {len(payload)} bytes, one send call each:")
    else:
        unit, scale = "MB/s", count * len(payload) / 1e6
        print(f"{count:,} messages of {len(payload) // 1024} KiB:")
    print(f"  raw loopback socket     {scale / raw:>12,.0f} {unit}")
    for face in ("sync", "async"):
        d, r = direct[face], relayed[face]
        print(
            f"  {face:5} channel, direct  {scale / d:>12,.0f} {unit}  "
            f"{d / raw:.2f}x the raw socket's time"
            + (f" (target <= {TARGET_RAW_RATIO:g}x)" if kind == "small" else "")
        )
        print(
            f"  {face:5} channel, relay   {scale / r:>12,.0f} {unit}  "
            f"{r / d:.2f}x the direct path's time (target <= {TARGET_RELAY_RATIO:g}x)"
        )
    moved = 2 * count * len(payload)  # both faces
    print(
        f"  CPU, both faces: direct {sum(direct_cpu):.2f} s (client, agent: "
        + ", ".join(f"{c:.2f}" for c in direct_cpu)
        + f"); relay {sum(relay_cpu):.2f} s (client, agent, controller: "
        + ", ".join(f"{c:.2f}" for c in relay_cpu)
        + f"), {sum(relay_cpu) / sum(direct_cpu):.2f}x the direct path's;"
        f" controller {relay_cpu[2] / moved * 1e9:.2f} ns/byte"
    )
    if kind == "small":
        best = count / min(direct["sync"], direct["async"])
        print(f"  best direct: {best:,.0f} msg/s (target >= {TARGET_RATE:,})")


if __name__ == "__main__":
    main()
