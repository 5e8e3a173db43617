"""netUnicorn's library tasks most used in data collection: Ping and tcpdump capture,
at their netUnicorn module paths, run by a real agent."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from shoal import Architecture, Experiment, ExperimentStatus, LocalCluster, Node, Pipeline
from shoal.library.capture.tcpdump import StartCapture, StopAllTCPDumps, StopNamedCapture
from shoal.library.measurements.ping import PacketResult, Ping, PingResult, parse_ping
from shoal.library.tasks_utils import subprocess_run
from shoal.model.result import Failure, Success

IPUTILS = """\
PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.
64 bytes from 10.0.0.2: icmp_seq=1 ttl=63 time=0.512 ms
From 10.0.0.1 icmp_seq=2 Destination Host Unreachable
64 bytes from 10.0.0.2: icmp_seq=3 ttl=63 time=1.25 ms

--- 10.0.0.2 ping statistics ---
3 packets transmitted, 2 received, +1 errors, 33.3333% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.512/0.881/1.250/0.369 ms
"""

BUSYBOX = """\
PING 10.0.0.2 (10.0.0.2): 56 data bytes
64 bytes from 10.0.0.2: seq=0 ttl=64 time=0.101 ms

--- 10.0.0.2 ping statistics ---
1 packets transmitted, 1 packets received, 0% packet loss
round-trip min/avg/max = 0.101/0.101/0.101 ms
"""


def test_ping_output_is_read_into_a_ping_result() -> None:
    result = parse_ping("10.0.0.2", IPUTILS)
    assert result.packets == [PacketResult(1, 63, 0.512, "ms"), PacketResult(3, 63, 1.25, "ms")]
    assert result.packet_loss == pytest.approx(33.3333)
    assert (result.min_rtt, result.avg_rtt, result.max_rtt, result.stddev_rtt) == (
        0.512,
        0.881,
        1.25,
        0.369,
    )
    assert result.unit_rtt == "ms"
    assert result.unparsed_output == ["From 10.0.0.1 icmp_seq=2 Destination Host Unreachable"]
    assert result.raw_output == IPUTILS

    busybox = parse_ping("10.0.0.2", BUSYBOX)
    assert busybox.packet_loss == 0 and busybox.avg_rtt == 0.101 and busybox.stddev_rtt == 0

    unreadable = parse_ping("host", "ping: something else entirely\n")
    assert unreadable == PingResult(
        "host", [], 100.0, 0, 0, 0, 0, "", ["ping: something else entirely"], unreadable.raw_output
    )


def test_library_tasks_refuse_what_they_cannot_run() -> None:
    windows = Node(name="w", architecture=Architecture.WINDOWS_AMD64)
    with pytest.raises(NotImplementedError, match="Ping is not implemented for architecture"):
        Ping("example.org").dispatch(windows)
    with pytest.raises(NotImplementedError, match="StartCapture is not implemented"):
        StartCapture("/tmp/x.pcap").dispatch(windows)
    with pytest.raises(ValueError, match="count must be a positive int"):
        Ping("example.org", count=0)
    with pytest.raises(TypeError, match="address must be"):
        Ping("")
    with pytest.raises(TypeError, match="arguments must be a list of str"):
        StartCapture("/tmp/x.pcap", "-i lo")  # type: ignore[arg-type]
    assert subprocess_run(["sh", "-c", "echo out; echo err >&2"]) == Success("out\n\nerr\n")
    assert isinstance(subprocess_run(["no-such-program-here"]), Failure)


def pcap_packets(path: Path) -> int:
    """How many packets a pcap file holds (its records, after the 24-byte header)."""
    data = path.read_bytes()
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset, count = 24, 0
    while offset + 16 <= len(data):
        (captured,) = struct.unpack_from(order + "I", data, offset + 8)
        offset += 16 + captured
        count += 1
    return count


@pytest.mark.timeout(90)
def test_a_pipeline_pings_and_captures_on_a_real_agent(tmp_path: Path) -> None:
    pcap = tmp_path / "run.pcap"
    pipeline = (
        Pipeline()
        .then(StartCapture(str(pcap), ["-i", "lo", "icmp"], name="capture"))
        .then(Ping("127.0.0.1", count=3, name="ping"))
        .then(StopNamedCapture("capture", name="stop"))
        .then(StopNamedCapture("no-such-step", name="stop-unknown"))
    )
    pipeline.early_stopping = False
    with LocalCluster(["a"], workdir=tmp_path / "cluster") as cluster:
        client = cluster.client()
        client.prepare_experiment(Experiment().map(pipeline, client.get_nodes()), "library")
        client.wait("library", until="ready", timeout=30)
        client.start_execution("library")
        info = client.wait("library", timeout=60)
    assert info.status is ExperimentStatus.FINISHED, info
    steps = info.execution_result[0].result.failure()  # the last step failed, as meant

    pid = steps["capture"][0].unwrap()
    assert isinstance(pid, int)
    assert not os.path.exists(f"/proc/{pid}"), "the capture still runs after its stop"

    ping = steps["ping"][0].unwrap()
    assert isinstance(ping, PingResult)
    assert [p.icmp_seq for p in ping.packets] == [1, 2, 3]
    assert ping.packet_loss == 0 and ping.unit_rtt == "ms" and ping.avg_rtt > 0

    assert steps["stop"][0] == Success("")
    assert pcap_packets(pcap) >= 6  # three echo requests and their replies, on lo
    assert steps["stop-unknown"][0] == Failure("no step named 'no-such-step' ran before this one")


@pytest.mark.timeout(60)
def test_stop_all_tcpdumps_stops_a_capture_nobody_named(tmp_path: Path) -> None:
    start = StartCapture(str(tmp_path / "x.pcap"), ["-i", "lo"]).linux_implementation
    pid = start.run().unwrap()
    try:
        stopped = StopAllTCPDumps().linux_implementation.run()
        assert stopped.unwrap() >= 1
        assert not os.path.exists(f"/proc/{pid}")
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
