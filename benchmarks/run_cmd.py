"""Commands through shoal: round trip of run_cmd("true").wait(), and output throughput.

Commands go over a channel to the node (direct here; ``--relay`` starts the
node with ``--no-data-server`` so they go through the controller). Side by
side with a plain local subprocess (the floor: no network, no controller) and
distexprunner's direct client->server TCP round trip, measured on this kind of
machine at 2.8 ms median (distexprunner is not on PyPI, so it is not rerun
here; the figure comes from ../shared/DESIGN.md). Targets: a round trip of at
most 2.0 ms, output at 200 MB/s or more.

    python benchmarks/run_cmd.py [--runs 500] [--megabytes 200] [--relay]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine

from shoal import LocalCluster
from shoal.runner import File, Server, ServerList
from shoal.runner.context import RunContext, activate

DISTEXPRUNNER_MS = 2.8
TARGET_MS = 2.0
TARGET_MB_S = 200


def relay_agent(cluster: LocalCluster, name: str) -> subprocess.Popen[bytes]:
    """An agent that serves no channels itself: its commands go through the relay."""
    args = ["--controller", cluster.endpoint, "--name", name, "--no-data-server"]
    args += ["--token-file", str(cluster.token_file)]
    args += ["--workdir", str(cluster.workdir / "agents" / name)]
    return subprocess.Popen(
        [sys.executable, "-m", "shoal", "agent", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--relay", action="store_true", help="through the controller's relay")
    args = parser.parse_args()
    print(f"machine: {machine()}")

    local = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(["true"], check=True)
        local.append(time.perf_counter() - t0)

    with LocalCluster(["node01"]) as cluster, cluster.client() as client:
        node = "node01"
        if args.relay:
            node = "relay-1"
            cluster.agents[node] = relay_agent(cluster, node)  # stopped with the cluster
            client.wait_for_nodes([node], 60)
        run_id = client.open_run("benchmark-run-cmd")
        activate(RunContext(client.commands(), {"node01": node}, run_id, True))
        server = ServerList(Server("node01", "127.0.0.1"))[0]
        for _ in range(20):  # warm up the connection and the agent
            server.run_cmd("true").wait()
        trips = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            server.run_cmd("true").wait()
            trips.append(time.perf_counter() - t0)

        command = f"yes | head -c {args.megabytes}M"
        with tempfile.TemporaryDirectory() as tmp:
            sink = File(Path(tmp) / "out.txt")
            t0 = time.perf_counter()
            server.run_cmd(command, stdout=sink).wait()
            shoal_s = time.perf_counter() - t0
            sink.close()
            assert (Path(tmp) / "out.txt").stat().st_size == args.megabytes * 2**20
            with open(Path(tmp) / "local.txt", "w") as out:
                t0 = time.perf_counter()
                with subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, text=True) as p:
                    assert p.stdout is not None
                    for line in p.stdout:
                        out.write(line)
                local_s = time.perf_counter() - t0
        [path] = set(client.commands().paths().values())
        activate(None)
        client.finish_run("benchmark-run-cmd")

    median = statistics.median(trips) * 1000
    p90 = statistics.quantiles(trips, n=10)[-1] * 1000
    floor = statistics.median(local) * 1000
    print(f"run_cmd('true').wait() round trip, {args.runs} runs, {path} channel:")
    print(f"  shoal (client -> node):          median {median:.2f} ms, p90 {p90:.2f} ms")
    print(f"  local subprocess.run(['true']):  median {floor:.2f} ms")
    print(
        f"  vs distexprunner direct TCP ({DISTEXPRUNNER_MS} ms): {median / DISTEXPRUNNER_MS:.2f}x"
        f"   vs target {TARGET_MS} ms: {median / TARGET_MS:.2f}x   vs local: {median / floor:.1f}x"
    )
    mb = args.megabytes
    print(f"output of `{command}` to a File handler:")
    print(
        f"  shoal: {mb / shoal_s:.0f} MB/s   local subprocess, line by line: "
        f"{mb / local_s:.0f} MB/s   ratio {local_s / shoal_s:.2f}x of local"
        f"   vs target {TARGET_MB_S} MB/s: {mb / shoal_s / TARGET_MB_S:.2f}x"
    )


if __name__ == "__main__":
    main()
