"""What the benchmarks share: the machine line, the seed's flags pipelines, a timed run."""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from shoal import Experiment, ExperimentStatus, RemoteClient

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    return (
        f"{platform.node()} · {platform.machine()} · {psutil.cpu_count()} cpus · "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB · Python {platform.python_version()}"
    )


def flags_pipelines(clients: int) -> tuple[Any, Any]:
    """(server, client) pipelines of examples/pipelines/flags.py for ``clients`` clients."""
    os.environ["CLIENTS_COUNT"] = str(clients)
    spec = importlib.util.spec_from_file_location("flags", ROOT / "examples/pipelines/flags.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.server_pipeline, module.clients_pipeline


def timed_run(
    client: RemoteClient,
    experiment: Experiment,
    name: str,
    before_start: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Prepare, start and wait; (prepare -> READY, start -> FINISHED) in seconds.
    ``before_start`` runs once it is READY, outside both timings."""
    t0 = time.perf_counter()
    client.prepare_experiment(experiment, name)
    client.wait(name, until="ready", timeout=120)
    if before_start is not None:
        prepared = time.perf_counter() - t0
        before_start()
        t0 = time.perf_counter() - prepared
    t1 = time.perf_counter()
    client.start_execution(name)
    info = client.wait(name, timeout=120)
    t2 = time.perf_counter()
    assert info.status is ExperimentStatus.FINISHED, info
    assert all(r.result.is_success for r in info.execution_result), info
    return t1 - t0, t2 - t1
