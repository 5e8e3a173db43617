"""Running a network on a throw-away local cluster: FISSION's ``simulate``."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

from shoal.dataflow.network import Network, load_network


def cluster_for(network: Network, heartbeat_timeout: float = 3.0) -> object:
    """A LocalCluster (not started): one agent per node in ``NODES`` (two for a MultiNode),
    groups as properties."""
    from shoal.client.local_cluster import LocalCluster

    stand_ins = [(name, node) for node in network.nodes for name in node.sample_names()]
    names = list(dict.fromkeys(name for name, _ in stand_ins)) or ["node-0", "node-1", "node-2"]
    properties = {name: {"groups": ",".join(node.groups)} for name, node in stand_ins}
    return LocalCluster(names, properties=properties, heartbeat_timeout=heartbeat_timeout)


def simulate(
    target: str | Path | ModuleType | Network,
    rounds: int | None = None,
    *,
    echo: bool = True,
    heartbeat_timeout: float = 3.0,
) -> Path:
    """Run a network on local agents until it ends (or Ctrl-C); returns its ``simulation/`` folder.

    The folder (in the network's folder) is cleared first; each job writes
    into ``simulation/<job id>/``. ``rounds`` stops the sources after that
    many values, so the network ends by itself.
    """
    from shoal.dataflow.coordinator import Coordinator

    network = target if isinstance(target, Network) else load_network(target)
    output = network.directory / "simulation"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    cluster = cluster_for(network, heartbeat_timeout)
    with cluster as started:  # type: ignore[attr-defined]
        coordinator = Coordinator(
            network, started.client(), output, max_rounds=rounds, loopback=True, echo=echo
        )
        try:
            coordinator.start()
            coordinator.wait()
        finally:
            coordinator.stop()
    return output
