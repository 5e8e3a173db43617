"""The controller's Prometheus metrics, served at ``/metrics``.

Everything is read at scrape time by one collector registered in the app's
own registry (never the process-wide default one: several controllers in one
process keep their figures apart):

- current state (nodes, deployments and graph tasks by state, the graph
  scheduler's queue) is counted from the live services, so nothing has to be
  kept in step with it;
- events (flag operations, relayed channel and command bytes, finished work)
  are counted where they happen, in plain integers the services own, and
  latencies go into :class:`LatencyHistogram`.

Why plain integers and a histogram of our own rather than prometheus_client's
``Counter`` and ``Histogram``: those take a lock on every increment (0.4 µs
for ``inc``, 1 µs for ``observe`` on the development machine), paid per flag
operation, per relayed message and per placed task; a plain increment costs
0.06 µs and :meth:`LatencyHistogram.observe` 0.17 µs, and the controller runs
in one event loop, so it needs no lock. The library still does the exposition
(and its parser reads it back in the tests).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shoal.controller.graph_state import FAILED, FINISHED, READY, TASK_STATES
from shoal.controller.registry import OFFLINE, ONLINE, SUSPECT
from shoal.model.experiment import FINAL_DEPLOYMENT_STATES

if TYPE_CHECKING:
    from shoal.controller.services import Services

# Seconds. Placing a ready task takes microseconds when a node has room and as
# long as a running task when none has; a store write takes a millisecond on
# SQLite and longer when it waits for SQLite's one writer or a far PostgreSQL.
PLACEMENT_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
STORE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

NODE_STATES = (ONLINE, SUSPECT, OFFLINE)
LIVE_DEPLOYMENT_STATES = ("preparing", "prepared", "running")
FLAG_OPERATIONS = ("get", "set", "add", "wait", "next_after", "list")


class LatencyHistogram:
    """Counts of observed durations per bucket, for one event loop (no lock).

    ``bounds`` are the buckets' upper limits in seconds, ascending; a value on
    a bound falls in that bucket, as Prometheus' ``le`` says.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((_le(bound), running))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class ControllerMetrics:
    """One controller's metrics registry and the histograms fed where events happen.

    Built before the services (the store's write hook needs it); ``watch``
    registers the collector once they exist.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.store_writes = LatencyHistogram(STORE_BUCKETS)

    def watch(self, svc: Services) -> None:
        self.registry.register(_ServicesCollector(svc, self))

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric as of now, and its content type: the format the HTTP
        ``Accept`` header asks for (Prometheus' text format, or OpenMetrics)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


def _by_state(
    name: str,
    documentation: str,
    states: Iterable[str],
    counts: Counter[str],
    label: str = "state",
) -> GaugeMetricFamily:
    """A gauge per state: the known states always (zero too), then any others seen."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    known = tuple(states)
    for state in (*known, *sorted(set(counts) - set(known))):
        family.add_metric([state], counts.get(state, 0))
    return family


class _ServicesCollector(Collector):
    """Reads one controller's services at scrape time (in its event loop)."""

    def __init__(self, svc: Services, metrics: ControllerMetrics) -> None:
        self.svc = svc
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._nodes()
        yield from self._experiments()
        yield from self._graphs()
        yield from self._flags()
        yield from self._relays()
        yield self.metrics.store_writes.family(
            "shoal_store_write_seconds",
            "Time from asking for a store write transaction to its commit (includes "
            "waiting for SQLite's single writer).",
        )

    def _nodes(self) -> Iterator[Metric]:
        states = Counter(node.state for node in self.svc.registry.nodes.values())
        yield _by_state("shoal_nodes", "Known nodes by liveness state.", NODE_STATES, states)

    def _experiments(self) -> Iterator[Metric]:
        experiments = self.svc.experiments
        live = list(experiments.live.values())
        yield _by_state(
            "shoal_experiments",
            "Unfinished pipeline experiments by status.",
            ("PREPARING", "READY", "RUNNING"),
            Counter(e.status for e in live),
            label="status",
        )
        yield _by_state(
            "shoal_deployments",
            "Deployments of unfinished pipeline experiments by state.",
            (*LIVE_DEPLOYMENT_STATES, *sorted(FINAL_DEPLOYMENT_STATES)),
            Counter(d.state for e in live for d in e.deployments.values()),
        )
        ended = CounterMetricFamily(
            "shoal_deployments_ended",
            "Pipeline deployments that reached a final state (stored), by that state.",
            labels=["state"],
        )
        for state, count in sorted(experiments.deployments_ended.items()):
            ended.add_metric([state], count)
        yield ended

    def _graphs(self) -> Iterator[Metric]:
        graphs = self.svc.graphs
        states: Counter[str] = Counter()
        queued = 0
        for session in graphs.sessions.values():
            states.update(session.task_counts)
            if session.error is None:
                queued += session.task_counts[READY]
        sessions = GaugeMetricFamily("shoal_graph_sessions", "Open graph sessions.")
        sessions.add_metric([], len(graphs.sessions))
        yield sessions
        yield _by_state(
            "shoal_graph_tasks", "Tasks of open graph sessions by state.", TASK_STATES, states
        )
        ended = CounterMetricFamily(
            "shoal_graph_tasks_ended",
            "Graph tasks that finished or failed, by that state.",
            labels=["state"],
        )
        for state in (FINISHED, FAILED):
            ended.add_metric([state], graphs.tasks_ended[state])
        yield ended
        queue = GaugeMetricFamily(
            "shoal_scheduler_queue_length",
            "Ready graph tasks waiting for a node to be placed on.",
        )
        queue.add_metric([], queued)
        yield queue
        yield graphs.placement.family(
            "shoal_scheduler_placement_seconds",
            "Time from a graph task being ready (its inputs exist) to its placement on a node.",
        )

    def _flags(self) -> Iterator[Metric]:
        ops = self.svc.flags.ops
        family = CounterMetricFamily(
            "shoal_flag_operations", "Flag operations by kind.", labels=["operation"]
        )
        for op in (*FLAG_OPERATIONS, *sorted(set(ops) - set(FLAG_OPERATIONS))):
            family.add_metric([op], ops.get(op, 0))
        yield family

    def _relays(self) -> Iterator[Metric]:
        channels, commands = self.svc.channel_service, self.svc.relay
        for name, documentation, value in (
            ("shoal_channel_connections", "Channels relayed.", channels.relayed),
            ("shoal_channel_messages", "Channel messages relayed.", channels.relayed_messages),
            ("shoal_channel_bytes", "Bytes relayed through channels.", channels.relayed_bytes),
            (
                "shoal_channel_zero_copy_bytes",
                "Bytes relayed through channels inside the kernel, not copied through "
                "the controller (the bodies of large frames, plain TCP on Linux).",
                channels.zero_copy_bytes,
            ),
            (
                "shoal_command_output_messages",
                "Output chunks of commands nodes reported for their records.",
                commands.output_messages,
            ),
            (
                "shoal_command_output_bytes",
                "Bytes of command output nodes reported for their records.",
                commands.output_bytes,
            ),
        ):
            yield CounterMetricFamily(name, documentation, value=value)
        relays = GaugeMetricFamily("shoal_channel_relays", "Channels being relayed now.")
        relays.add_metric([], channels.open_relays)
        yield relays
