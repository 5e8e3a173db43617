"""Placing a network's jobs: a node for each by the allocation rules, and the
job started there as a one-task shoal experiment (a LOCAL job: a host thread in
the client process)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from shoal.dataflow.allocation import allocate, node_infos
from shoal.dataflow.errors import AllocationError, DataflowError
from shoal.dataflow.host import CopyFilesTask, HostSpec, JobHost, JobHostTask
from shoal.dataflow.job_state import JobState
from shoal.dataflow.jobs import BaseJob
from shoal.dataflow.network import dependency_files
from shoal.dataflow.transport import LOCAL_NODE
from shoal.model import Experiment, Pipeline

if TYPE_CHECKING:
    from shoal.dataflow.coordinator import Coordinator

log = logging.getLogger("shoal.dataflow")

# How long a placed job has to connect back before it is placed again.
START_TIMEOUT = 60.0


class Placement:
    """Chooses the nodes of one run's jobs and starts them there."""

    def __init__(self, run: Coordinator) -> None:
        self.run = run

    def place(self, state: JobState, avoid: set[str]) -> str:
        """Choose ``state``'s node, not one of ``avoid`` unless only such a node fits."""
        infos = self._live_infos(state, avoid)
        try:
            chosen = allocate(state.job, infos)
        except AllocationError:
            if not avoid:
                raise
            # Only a suspect node fits: it may have lost the job, not its life.
            chosen = allocate(state.job, self._live_infos(state, set()))
        state.node = chosen.name
        return chosen.name

    def place_all(self) -> list[tuple[JobState, str]]:
        """A node for every job that does not run in the client."""
        remote = [state for state in self.run.states.values() if not state.local]
        return [(state, self.place(state, set())) for state in remote]

    def prepare(self, state: JobState, node: str) -> str:
        """Prepare the experiment hosting ``state``'s next generation on ``node``; its name."""
        run = self.run
        state.generation += 1
        state.ready = False
        state.status = "starting"
        state.started_at = time.monotonic()
        name = f"dataflow-{run.network.name}-{run.run_id}-job{state.job.id}-g{state.generation}"
        state.experiment = name
        spec = HostSpec(
            job_id=state.job.id,
            generation=state.generation,
            coordinator=tuple(run.client_hosts),
            port=run.port,
            token=run.token,
            coordinator_token=run.control_token,
            directory=self.directory(state.job),
            node=node,
            # With PRE_COPY every node has them already.
            files={} if run.network.pre_copy else self._dependencies(state.job),
        )
        pipeline = Pipeline(JobHostTask(state.job, spec), name=f"job-{state.job.id}")
        experiment = Experiment().append(node, pipeline)
        run.call(run.client.prepare_experiment, experiment, name)
        log.info("job %s placed on %s (%s)", state.job.name, node, name)
        return name

    def start_local(self, state: JobState) -> None:
        """Run a LOCAL job's host in a thread of this process."""
        run = self.run
        state.generation += 1
        state.status = "starting"
        state.node = LOCAL_NODE
        spec = HostSpec(
            job_id=state.job.id,
            generation=state.generation,
            coordinator=("127.0.0.1",),
            port=run.port,
            token=run.token,
            coordinator_token=run.control_token,
            directory=str(run.output_dir / str(state.job.id)),
            node=LOCAL_NODE,
            forward_output=False,
        )
        host = JobHost(state.job, spec, run.reach())
        run.spawn(host.run, f"local-job-{state.job.id}")

    def directory(self, job: BaseJob) -> str:
        """The job's folder on its node (relative: under the node's temp folder)."""
        if self.run.loopback:
            return str(self.run.output_dir / str(job.id))
        return f"shoal-dataflow/{self.run.network.name}/{job.id}"

    def pre_copy(self, timeout: float) -> None:
        """PRE_COPY: every job's dependencies onto every node now, so a failover
        does not wait for them."""
        run = self.run
        files = {
            self.directory(state.job): self._dependencies(state.job)
            for state in run.states.values()
            if not state.local and state.job.DEPENDENCIES
        }
        if not files:
            return
        online = {n.name for n in run.call(run.client.get_nodes)}
        nodes = [n.name for n in run.network.nodes if n.name in online]
        name = f"dataflow-{run.network.name}-{run.run_id}-pre-copy"
        experiment = Experiment()
        for node in nodes:
            experiment.append(node, Pipeline(CopyFilesTask(files), name="pre-copy"))
        run.call(run.client.prepare_experiment, experiment, name)
        run.call(run.client.wait, name, until="ready", timeout=timeout)
        run.call(run.client.start_execution, name)
        info = run.call(run.client.wait, name, timeout=timeout)
        if info.status.name != "FINISHED":
            raise DataflowError(f"PRE_COPY: copying the dependencies failed: {info}")
        log.info("PRE_COPY: dependencies copied to %s", ", ".join(nodes))

    def _live_infos(self, state: JobState, exclude: set[str]) -> list[Any]:
        run = self.run
        nodes = run.call(run.client.get_nodes)
        counts: dict[str, int] = {}
        for other in run.states.values():
            active = other.status not in ("done", "failed")
            if other.node and not other.local and active and other is not state:
                counts[other.node] = counts.get(other.node, 0) + 1
        neighbours = [
            n for i in run.network.neighbours(state.job) if (n := run.states[i].node) is not None
        ]
        return node_infos(nodes, run.network.nodes, counts, exclude, neighbours)

    def _dependencies(self, job: BaseJob) -> dict[str, bytes]:
        return dependency_files(self.run.network.directory, job)
