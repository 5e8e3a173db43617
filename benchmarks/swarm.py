"""What one controller holds: a swarm of simulated nodes on one real controller.

For each N (default 100, 300, 1000) a fresh controller (SQLite, the
controller's default heartbeat settings) and N simulated agents
(shoal.agent.simulated: each its own WebSocket, the real agent protocol, no
executor processes) in this process. Prints:

* the time until all N are online (enrolled with the join token, each getting
  its own credential), and the controller's CPU over that time;
* the controller idle with N nodes: CPU (% of one core) and RSS over 10 s;
* heartbeat handling cost: that idle CPU divided by the heartbeats sent;
* the seed's flags barrier with 1 server + N-1 clients (prepare -> READY and
  start -> FINISHED as the client sees it, with every node's results fetched,
  and as the controller stored it), the flag's final value checked;
* where it breaks first: budgets missed (online < 10 s, idle < 5 % of a core,
  barrier < 2 s at 1,000 nodes), nodes suspect or lost, reconnects.

    python benchmarks/swarm.py [--nodes 100 300 1000] [--idle 10] [--interval 1.0]

With ``--py-spy PATH`` (the py-spy binary) the controller is profiled during
each enrollment, idle time, prepare and barrier run into
``swarm-online-N.txt``, ``swarm-idle-N.txt``, ``swarm-prepare-N.txt`` and
``swarm-barrier-N.txt`` (collapsed stacks) in the current folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil
from common import flags_pipelines, machine, timed_run

from shoal import Experiment, LocalCluster
from shoal.agent.simulated import Swarm

ONLINE_BUDGET_S = 10.0  # for 1,000 nodes
IDLE_BUDGET_PCT = 5.0
BARRIER_BUDGET_S = 2.0


@dataclass
class Figures:
    nodes: int
    online_s: float = float("nan")
    online_cpu_s: float = float("nan")
    online_swarm_cpu_s: float = float("nan")
    idle_cpu_pct: float = float("nan")
    idle_rss_mb: float = float("nan")
    heartbeat_us: float = float("nan")
    prepare_s: float = float("nan")
    prepare_cpu_s: float = float("nan")
    barrier_s: float = float("nan")
    barrier_cpu_s: float = float("nan")
    barrier_swarm_cpu_s: float = float("nan")
    stored_barrier_s: float = float("nan")  # started_at -> finished_at, as the controller stored
    swarm_cpu_pct: float = float("nan")
    problems: list[str] = field(default_factory=list)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def log_count(path: str, *needles: str) -> int:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return sum(1 for line in f if any(n in line for n in needles))
    except OSError:
        return 0


def profiler(py_spy: str | None, pid: int, what: str) -> subprocess.Popen[bytes] | None:
    if not py_spy:
        return None
    out = f"swarm-{what}.txt"
    args = [py_spy, "record", "--pid", str(pid), "--format", "raw", "-o", out, "--gil"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def measure(
    n: int, idle_s: float, interval: float, timeout: float, lost: float, py_spy: str | None
) -> Figures:
    fig = Figures(n)
    server_pipeline, clients_pipeline = flags_pipelines(n - 1)
    names = ["snl-server-sim", *(f"raspi-sim-{i:04d}" for i in range(n - 1))]
    me = psutil.Process()
    with LocalCluster(
        [], heartbeat_interval=interval, heartbeat_timeout=timeout, lost_timeout=lost
    ) as cluster:
        assert cluster.controller is not None
        ctrl = psutil.Process(cluster.controller.proc.pid)
        log = str(cluster.controller.log_path)
        client = cluster.client()
        c0, s0 = cpu_seconds(ctrl), cpu_seconds(me)
        spy = profiler(py_spy, ctrl.pid, f"online-{n}")
        with Swarm(cluster.endpoint, cluster.agent_token, names) as swarm:
            try:
                fig.online_s = swarm.wait_online(timeout=300)
            except TimeoutError as exc:
                fig.problems.append(str(exc))
                return fig
            finally:
                stop_profiler(spy)
            fig.online_cpu_s = cpu_seconds(ctrl) - c0
            fig.online_swarm_cpu_s = cpu_seconds(me) - s0
            # Let the enrollment burst settle before measuring idle.
            time.sleep(2)  # measuring over a fixed window, not synchronising
            spy = profiler(py_spy, ctrl.pid, f"idle-{n}")
            beats0, c0, s0, t0 = (
                swarm.stats.heartbeats,
                cpu_seconds(ctrl),
                cpu_seconds(me),
                time.monotonic(),
            )
            time.sleep(idle_s)
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(ctrl) - c0
            stop_profiler(spy)
            beats = swarm.stats.heartbeats - beats0
            fig.idle_cpu_pct = cpu / elapsed * 100
            fig.idle_rss_mb = ctrl.memory_info().rss / 2**20
            fig.heartbeat_us = cpu / max(beats, 1) * 1e6
            fig.swarm_cpu_pct = (cpu_seconds(me) - s0) / elapsed * 100

            nodes = client.get_nodes()
            server = nodes.filter(lambda x: x.name.startswith("snl")).take(1)
            clients = nodes.filter(lambda x: x.name.startswith("raspi")).take(n - 1)
            experiment = Experiment().map(server_pipeline, server).map(clients_pipeline, clients)
            spies = [profiler(py_spy, ctrl.pid, f"prepare-{n}")]
            c0, s0 = cpu_seconds(ctrl), cpu_seconds(me)
            at_start: list[float] = []

            def started() -> None:
                stop_profiler(spies.pop())
                at_start.extend((cpu_seconds(ctrl), cpu_seconds(me)))
                spies.append(profiler(py_spy, ctrl.pid, f"barrier-{n}"))

            try:
                fig.prepare_s, fig.barrier_s = timed_run(
                    client, experiment, f"barrier-{n}", before_start=started
                )
                fig.prepare_cpu_s = at_start[0] - c0
                fig.barrier_cpu_s = cpu_seconds(ctrl) - at_start[0]
                fig.barrier_swarm_cpu_s = cpu_seconds(me) - at_start[1]
                raw = client.raw_status(f"barrier-{n}")
                fig.stored_barrier_s = raw["finished_at"] - raw["started_at"]
                final = client.get_flag_values(f"barrier-{n}", "clients_control")
                if (final.text_value, final.int_value) != ("stage 2", 0):
                    fig.problems.append(f"flag ended at {final!r}, not stage 2 / 0")
            except Exception as exc:  # a benchmark reports what broke and goes on
                fig.problems.append(f"flags barrier: {type(exc).__name__}: {str(exc)[:200]}")
            finally:
                for spy in spies:
                    stop_profiler(spy)
            stats = swarm.stats
            if stats.reconnects:
                fig.problems.append(f"{stats.reconnects} reconnects (closes: {stats.closed})")
        suspect = log_count(log, "suspect: silent")
        lost = log_count(log, "was lost")
        if suspect:
            fig.problems.append(f"{suspect} times a node was marked suspect")
        if lost:
            fig.problems.append(f"{lost} nodes were marked lost")
    if n >= 1000:
        if fig.online_s > ONLINE_BUDGET_S:
            fig.problems.append(f"online in {fig.online_s:.1f} s > {ONLINE_BUDGET_S:g} s")
        if fig.barrier_s > BARRIER_BUDGET_S:
            fig.problems.append(f"barrier {fig.barrier_s:.2f} s > {BARRIER_BUDGET_S:g} s")
    if fig.idle_cpu_pct > IDLE_BUDGET_PCT:
        fig.problems.append(f"idle {fig.idle_cpu_pct:.1f} % of a core > {IDLE_BUDGET_PCT:g} %")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured")
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat interval")
    parser.add_argument("--timeout", type=float, default=5.0, help="heartbeat timeout")
    parser.add_argument("--lost", type=float, default=60.0, help="lost timeout")
    parser.add_argument("--py-spy", help="profile the controller in each barrier with this py-spy")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"heartbeat every {args.interval:g} s, suspect after {args.timeout:g} s, "
        f"lost after {args.lost:g} s; the swarm runs in this process"
    )
    results = []
    for n in args.nodes:
        fig = measure(n, args.idle, args.interval, args.timeout, args.lost, args.py_spy)
        results.append(fig)
        print(f"\n{n} simulated nodes (load {os.getloadavg()[0]:.2f})")
        print(
            f"  online:   {fig.online_s:.2f} s ({n / fig.online_s:.0f} nodes/s), "
            f"CPU: controller {fig.online_cpu_s:.2f} s, swarm {fig.online_swarm_cpu_s:.2f} s"
        )
        print(
            f"  idle:     controller {fig.idle_cpu_pct:.1f} % of a core "
            f"({fig.idle_cpu_pct / IDLE_BUDGET_PCT:.2f}x of the {IDLE_BUDGET_PCT:g} % budget), "
            f"{fig.idle_rss_mb:.0f} MB RSS; swarm {fig.swarm_cpu_pct:.1f} %"
        )
        print(f"  heartbeat: {fig.heartbeat_us:.0f} µs of controller CPU each")
        print(
            f"  barrier:  start -> FINISHED {fig.barrier_s:.2f} s "
            f"({fig.barrier_s / BARRIER_BUDGET_S:.2f}x of the {BARRIER_BUDGET_S:g} s budget), "
            f"prepare -> READY {fig.prepare_s:.2f} s (controller CPU {fig.prepare_cpu_s:.2f} s)"
        )
        print(
            f"            started -> finished as stored by the controller "
            f"{fig.stored_barrier_s:.2f} s (the rest is fetching {n} nodes' results)"
        )
        print(
            f"            CPU from start to FINISHED: controller {fig.barrier_cpu_s:.2f} s, "
            f"swarm and client {fig.barrier_swarm_cpu_s:.2f} s"
        )
        for problem in fig.problems:
            print(f"  PROBLEM:  {problem}")
    broken = next((f for f in results if f.problems), None)
    print()
    if broken is None:
        print("breaks first: nothing broke up to", results[-1].nodes, "nodes")
    else:
        print(f"breaks first: at {broken.nodes} nodes: {broken.problems[0]}")


if __name__ == "__main__":
    sys.exit(main())
