"""The seed's flags notebook through netUnicorn's API on shoal, beside shoal's own API.

Both runs use the same local cluster (1 server, N clients), the same user and
the same two pipelines: once written with netUnicorn's packages and driven by
netUnicorn's ``RemoteClient`` (``NETUNICORN_ENDPOINT`` = the controller's
``/netunicorn``), once written with shoal's tasks and driven by shoal's client.
Printed: the wall time from ``start_execution`` to FINISHED (and from prepare
to READY), medians over the runs, and their ratios.

netUnicorn's client has no wait call: its status is polled every 10 ms, which
adds up to 10 ms to its figures. What remains is netUnicorn's own design: its
executor checks its tasks once a second and its flag tasks poll once a second,
so each barrier costs up to a second whoever serves the flags; shoal's tasks
are woken by the flag change itself.

    pip install -e '.[bench]'   # netUnicorn's client and executor (a peer)
    python benchmarks/netunicorn_flags.py [--clients 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from common import flags_pipelines, machine, timed_run

from shoal import Experiment, LocalCluster, RemoteClient

POLL_S = 0.01


def netunicorn_pipelines(clients: int) -> tuple[Any, Any]:
    """The notebook's In [3], with netUnicorn's own classes."""
    from netunicorn.base import Pipeline
    from netunicorn.library.tasks.flags import (
        AtomicDecrementFlagTask,
        AtomicIncrementFlagTask,
        FlagValues,
        GetFlagTask,
        SetFlagTask,
        WaitForExactFlagResultTask,
    )

    flag = "clients_control"
    server = (
        Pipeline()
        .then(SetFlagTask(flag, flag_values=FlagValues(text_value="stage 1", int_value=0)))
        .then(
            WaitForExactFlagResultTask(
                flag_name=flag, values=FlagValues(text_value="stage 1", int_value=clients)
            )
        )
        .then(SetFlagTask(flag, flag_values=FlagValues(text_value="stage 2", int_value=clients)))
        .then(
            WaitForExactFlagResultTask(
                flag_name=flag, values=FlagValues(text_value="stage 2", int_value=0)
            )
        )
        .then(GetFlagTask(flag))
    )
    client = (
        Pipeline()
        .then(
            WaitForExactFlagResultTask(
                flag_name=flag, values=FlagValues(text_value="stage 1", int_value=0)
            )
        )
        .then(AtomicIncrementFlagTask(flag))
        .then(
            WaitForExactFlagResultTask(
                flag_name=flag, values=FlagValues(text_value="stage 2", int_value=clients)
            )
        )
        .then(AtomicDecrementFlagTask(flag))
        .then(GetFlagTask(flag))
    )
    return server, client


def poll(get_status: Callable[[], Any], wanted: Any, timeout: float = 120) -> Any:
    """netUnicorn's client has no wait: poll its status call, bounded in time."""
    deadline = time.monotonic() + timeout
    while (info := get_status()).status != wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {wanted} after {timeout} s:\n{info}")
        time.sleep(POLL_S)
    return info


def run_netunicorn(cluster: LocalCluster, clients: int, name: str) -> tuple[float, float]:
    from netunicorn.base import Experiment as NuExperiment
    from netunicorn.base.experiment import ExperimentStatus as NuStatus
    from netunicorn.client import RemoteClient as NuClient

    server_pipeline, client_pipeline = netunicorn_pipelines(clients)
    nu = NuClient(f"{cluster.endpoint}/netunicorn", cluster.login, cluster.password)
    nodes = nu.get_nodes()
    client_nodes = nodes.filter(lambda node: node.name.startswith("raspi")).take(clients)
    server_node = nodes.filter(lambda node: node.name.startswith("snl-server")).take(1)
    experiment = NuExperiment().map(server_pipeline, server_node).map(client_pipeline, client_nodes)
    t0 = time.perf_counter()
    nu.prepare_experiment(experiment, name)
    poll(lambda: nu.get_experiment_status(name), NuStatus.READY)
    t1 = time.perf_counter()
    nu.start_execution(name)
    info = poll(lambda: nu.get_experiment_status(name), NuStatus.FINISHED)
    t2 = time.perf_counter()
    for result in info.execution_result:
        outcome, _log = result.result
        assert type(outcome).__name__ == "Success", result
    return t1 - t0, t2 - t1


def run_shoal(client: RemoteClient, clients: int, name: str) -> tuple[float, float]:
    server_pipeline, client_pipeline = flags_pipelines(clients)
    nodes = client.get_nodes()
    client_nodes = nodes.filter(lambda n: n.name.startswith("raspi")).take(clients)
    server_node = nodes.filter(lambda n: n.name.startswith("snl-server")).take(1)
    experiment = Experiment().map(server_pipeline, server_node).map(client_pipeline, client_nodes)
    return timed_run(client, experiment, name)


def ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.0f} ms "
        f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3, help="the notebook has 3")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    names = ["snl-server-5", *(f"raspi-{i:02d}" for i in range(args.clients))]
    print(f"machine: {machine()}")
    print(f"flags notebook, 1 server + {args.clients} clients, {args.runs} runs of each")
    peer = importlib.util.find_spec("netunicorn") is not None and all(
        importlib.util.find_spec(f"netunicorn.{part}") is not None
        for part in ("client", "base", "library")
    )
    if not peer:
        print(
            "netUnicorn's packages are not installed here (pip install -e '.[bench]'):"
            " shoal's own API only, no ratio"
        )
    with LocalCluster(names) as cluster:
        client = cluster.client()
        nu_prepare, nu_run, own_prepare, own_run = [], [], [], []
        for run in range(args.runs):
            # Alternate, so neither side always runs on a warmer machine.
            if peer:
                prepare, wall = run_netunicorn(cluster, args.clients, f"nu-flags-{run}")
                nu_prepare.append(prepare)
                nu_run.append(wall)
            prepare, wall = run_shoal(client, args.clients, f"shoal-flags-{run}")
            own_prepare.append(prepare)
            own_run.append(wall)
    for title, theirs, ours in (
        ("start_execution -> FINISHED", nu_run, own_run),
        ("prepare -> READY", nu_prepare, own_prepare),
    ):
        print(title)
        if theirs:
            print(f"  netUnicorn API on shoal: {ms(theirs)}")
        print(f"  shoal's own API:         {ms(ours)}")
        if theirs:
            ratio = statistics.median(theirs) / statistics.median(ours)
            print(f"  ratio netUnicorn API / shoal API: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
