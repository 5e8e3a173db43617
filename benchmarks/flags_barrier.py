"""The seeds' flags experiment with 1 server and 20 clients on a local cluster.

Prints the wall time from start_execution to FINISHED (target: under 1.5 s;
netUnicorn's design polls flags and ticks its scheduler once a second, so its
two barriers cannot pass in under about two seconds), and an idle agent's
resident memory and CPU use (target: under 60 MB and 1 % of a core).

    python benchmarks/flags_barrier.py [--clients 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import psutil
from common import flags_pipelines, machine, timed_run

from shoal import Experiment, LocalCluster

TARGET_S = 1.5
NETUNICORN_FLOOR_S = 2.0  # two barriers, each seen only at a once-a-second poll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    server_pipeline, clients_pipeline = flags_pipelines(args.clients)
    names = ["snl-server-5", *(f"raspi-{i:02d}" for i in range(args.clients))]
    print(f"machine: {machine()}")
    with LocalCluster(names) as cluster:
        client = cluster.client()
        nodes = client.get_nodes()
        server = nodes.filter(lambda n: n.name.startswith("snl")).take(1)
        clients = nodes.filter(lambda n: n.name.startswith("raspi")).take(args.clients)
        walls, prepares = [], []
        for run in range(args.runs):
            name = f"barrier-{run}"
            experiment = Experiment().map(server_pipeline, server).map(clients_pipeline, clients)
            prepare_s, run_s = timed_run(client, experiment, name)
            prepares.append(prepare_s)
            walls.append(run_s)
        median = statistics.median(walls)
        print(f"flags barrier, 1 server + {args.clients} clients, {args.runs} runs")
        print(
            f"  start -> FINISHED: median {median * 1000:.0f} ms, "
            f"min {min(walls) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms"
        )
        print(f"  prepare -> READY:  median {statistics.median(prepares) * 1000:.0f} ms")
        print(f"  vs target {TARGET_S} s: {median / TARGET_S:.2f}x of the budget")
        print(
            f"  vs netUnicorn's polling floor (~{NETUNICORN_FLOOR_S:.0f} s): "
            f"{NETUNICORN_FLOOR_S / median:.1f}x faster"
        )

        agent = psutil.Process(cluster.agents["raspi-00"].pid)
        agent.cpu_percent(None)
        cpu0 = sum(agent.cpu_times()[:2])
        time.sleep(5)  # measuring idle use over a fixed window, not synchronising
        cpu = (sum(agent.cpu_times()[:2]) - cpu0) / 5 * 100
        rss = agent.memory_info().rss / 2**20
        print(
            f"idle agent: {rss:.1f} MB RSS ({rss / 60:.2f}x of the 60 MB budget), "
            f"{cpu:.2f} % of one core ({cpu / 1:.2f}x of the 1 % budget)"
        )


if __name__ == "__main__":
    sys.exit(main())
