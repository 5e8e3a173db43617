"""ICMP ping (netUnicorn's ``netunicorn.library.tasks.measurements.ping``).

``Ping(address, count)`` in a pipeline runs the node's ``ping`` and gives a
:class:`PingResult`: each reply, the loss and the round-trip statistics, with
the raw output kept beside them::

    from shoal.library.measurements.ping import Ping

    pipeline = Pipeline().then(Ping("example.org", count=5, name="ping"))
    ...
    result = info.execution_result[0].result.unwrap()["ping"][0].unwrap()
    result.avg_rtt, result.packet_loss
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shoal.library.tasks_utils import install_if_missing, subprocess_run
from shoal.model.architecture import Architecture
from shoal.model.node import Node
from shoal.model.pipeline import Task, TaskDispatcher
from shoal.model.result import Result

__all__ = ["PacketResult", "Ping", "PingLinuxImplementation", "PingResult", "parse_ping"]

LINUX = {Architecture.LINUX_AMD64, Architecture.LINUX_ARM64}

_REPLY = re.compile(r"\b(?:icmp_)?seq=(\d+)\s+ttl=(\d+)\s+time=([\d.]+)\s*(\S+)")
_LOSS = re.compile(r"([\d.]+)% packet loss")
# iputils prints min/avg/max/mdev; BusyBox min/avg/max only
_RTT = re.compile(r"=\s*([\d.]+)/([\d.]+)/([\d.]+)(?:/([\d.]+))?\s*(\S+)")


@dataclass
class PacketResult:
    """One reply: its sequence number, TTL and round-trip time (in ``unit``)."""

    icmp_seq: int
    ttl: int
    time: float
    unit: str


@dataclass
class PingResult:
    """What a ping found. A run whose output could not be read has no packets,
    a loss of 100 and zero times; ``raw_output`` is always the whole output."""

    host: str
    packets: list[PacketResult]
    packet_loss: float
    min_rtt: float
    avg_rtt: float
    max_rtt: float
    stddev_rtt: float
    unit_rtt: str
    unparsed_output: list[str] = field(default_factory=list)
    raw_output: str = ""


def parse_ping(host: str, output: str) -> PingResult:
    """Read the output of iputils' (or BusyBox's) ``ping`` into a :class:`PingResult`.

    ``unparsed_output`` keeps the lines that are none of the header, a reply,
    the statistics (errors such as "Destination Host Unreachable", say).
    """
    packets: list[PacketResult] = []
    unparsed: list[str] = []
    loss: float | None = None
    rtt: tuple[float, float, float, float, str] | None = None
    for line in filter(None, (raw.strip() for raw in output.splitlines())):
        if (reply := _REPLY.search(line)) is not None:
            seq, ttl, time, unit = reply.groups()
            packets.append(PacketResult(int(seq), int(ttl), float(time), unit))
        elif (lost := _LOSS.search(line)) is not None:
            loss = float(lost.group(1))
        elif line.startswith(("rtt ", "round-trip ")) and (stats := _RTT.search(line)):
            low, avg, high, dev, unit = stats.groups()
            rtt = (float(low), float(avg), float(high), float(dev or 0), unit)
        elif not line.startswith(("PING ", "---")):
            unparsed.append(line)
    if loss is None:
        return PingResult(host, [], 100.0, 0.0, 0.0, 0.0, 0.0, "", unparsed, output)
    low, avg, high, dev, unit = rtt if rtt is not None else (0.0, 0.0, 0.0, 0.0, "")
    return PingResult(host, packets, loss, low, avg, high, dev, unit, unparsed, output)


class PingLinuxImplementation(Task):
    """``ping -c count address`` on a Linux node: Success with a
    :class:`PingResult`, or, when ``ping`` fails (no reply at all, an unknown
    host), Failure with its output."""

    requirements = [install_if_missing("ping", "iputils-ping")]

    def __init__(self, address: str, count: int = 1, name: str | None = None) -> None:
        if not isinstance(address, str) or not address.strip():
            raise TypeError(f"address must be a host name or address (str), got {address!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, got {count!r}")
        super().__init__(name)
        self.address = address.strip()
        self.count = count

    def run(self) -> Result:
        return subprocess_run(["ping", "-c", str(self.count), self.address]).map(
            lambda output: parse_ping(self.address, output)
        )


class Ping(TaskDispatcher):
    """Ping ``address`` ``count`` times from the node (Linux nodes; another
    architecture is refused when the pipeline is mapped to it)."""

    def __init__(self, address: str, count: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.address = address
        self.count = count
        self.linux_implementation = PingLinuxImplementation(address, count, name=self.name)

    def dispatch(self, node: Node) -> Task:
        if node.architecture in LINUX:
            return self.linux_implementation
        raise NotImplementedError(f"Ping is not implemented for architecture {node.architecture}")
