"""Running runner experiments in-process against a live cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
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


def env_for(cluster: LocalCluster) -> dict[str, str]:
    """This process's environment, pointed at ``cluster``."""
    return {
        **os.environ,
        "SHOAL_ENDPOINT": cluster.endpoint,
        "SHOAL_LOGIN": cluster.login,
        "SHOAL_PASSWORD": cluster.password,
    }


def shoal_exp(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 50
) -> subprocess.CompletedProcess[str]:
    """`shoal exp --no-progress ARGS` in ``cwd``, as a user runs it; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "shoal", "exp", "--no-progress", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
