"""Running runner experiments in-process against a live cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal import LocalCluster
from shoal.runner.execution import Outcome, run_experiment
from shoal.runner.registry import REGISTRY, reg_exp
from shoal.runner.server import ServerList


def run_inline(
    cluster: LocalCluster, servers: ServerList, func: Callable[..., Any], **options: Any
) -> list[Outcome]:
    """Register ``func`` like @reg_exp would and run each of its experiments once."""
    REGISTRY.clear()
    reg_exp(servers=servers, **options)(func)
    specs = list(REGISTRY)
    REGISTRY.clear()
    nodes = {s.id: s.id for s in servers}
    with cluster.client() as client:
        return [run_experiment(client, nodes, spec) for spec in specs]
