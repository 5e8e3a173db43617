"""Task graphs side by side: shoal.graph, Dask distributed and Ray, on this machine.

Four workloads, each on two workers per system (shoal: a fresh local cluster of
two agents of one cpu each; Dask: ``LocalCluster(n_workers=2, threads_per_worker=1)``;
Ray: ``ray.init(num_cpus=2)``):

  a. independent no-op Python tasks           (tasks/s, higher is better)
  b. a binary tree reduction over N leaves    (seconds, lower is better)
  c. a chain of dependent tasks, each submitted and waited for on its own
                                              (ms per round trip, lower is better)
  d. fan-in: 20 tasks making 5 MB each, read by one task (seconds, lower is better)

The machine's own limit for (a) is measured first, in the same run: a bare warm
pool of two Python workers fed one task per message over socketpairs, 16 in
flight per worker (:mod:`graph_bare`); each system's no-op rate is also printed
as a share of it, and of the same pool run lock-step (one task in flight per
worker), the pool DESIGN.md's 60 % target quotes (about 21,600 tasks/s).
The floor of (c) too: a bare chain through four Python processes laid out as
shoal's, which forward a pickled message and do nothing else, once over plain
TCP and once over WebSockets as shoal's processes talk (:mod:`graph_bare_ws`);
and of (d): the
CPU it takes just to make the blocks (with the C allocator's defaults, and with
freed memory reused as shoal's task workers do; the lower one is the floor).
Every figure is printed with its ratio to the faster of Dask and Ray measured in
the same run (for the speed-up, > 1 means better than that peer). Dask and Ray
are benchmark-only dependencies (``pip install -e '.[bench]'``); a peer that is
not installed is skipped with a message.

Measured on the 2-cpu development VM (Dask 2026.8, Ray 2.60): no-ops Ray 1,750
tasks/s, Dask 500; tree Ray 11.2 s, Dask 39 s; chain Ray 1.4 ms, Dask 11.5 ms;
fan-in Dask 0.29 s, Ray 0.99 s.

    python benchmarks/graph.py                  # all three systems
    python benchmarks/graph.py --only dask      # one system (repeatable)
    python benchmarks/graph.py --tasks 2000 --leaves 2000 --chain 50   # quicker
    python benchmarks/graph.py --only shoal --workload noop --workload chain
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SYSTEMS = ("shoal", "dask", "ray")
PEERS = ("dask", "ray")
MB = 2**20


@dataclass(frozen=True)
class Params:
    """The sizes of the four workloads."""

    tasks: int = 10_000
    leaves: int = 10_000
    chain: int = 200
    fanin: int = 20
    megabytes: int = 5
    workloads: tuple[str, ...] = ("noop", "tree", "chain", "fanin")
    # The fan-in is timed this many times and its median kept: the first run of
    # a process touches 100 MB of fresh memory, which on a VM costs the host's
    # first backing of those pages (measured here: the producers' writes ten
    # times slower, the run twice as long as the next), whichever system runs it.
    fanin_runs: int = 3


@dataclass(frozen=True)
class Metric:
    """One workload's figure: its name, unit, and whether higher is better."""

    key: str
    title: str
    unit: str
    higher_is_better: bool


METRICS = (
    Metric("noop", "independent no-op tasks", "tasks/s", True),
    Metric("tree", "binary tree reduction", "s", False),
    Metric("chain", "chain, one submit + wait per task", "ms/task", False),
    Metric("fanin", "fan-in of 5 MB objects", "s", False),
)

Results = dict[str, float]


# --- the task bodies, shared by the three systems ------------------------------------------


def noop(i: int) -> None:
    """A task that does nothing."""
    return None


def square(i: int) -> int:
    """A leaf of the tree."""
    return i * i


def add(a: int, b: int) -> int:
    """An inner node of the tree."""
    return a + b


def inc(x: int) -> int:
    """A link of the chain."""
    return x + 1


def make_block(seed: int, size: int) -> bytes:
    """``size`` random-ish bytes (not compressible, cheap to make)."""
    return random.Random(seed).randbytes(size)


def total_size(*blocks: bytes) -> int:
    """The fan-in task: the number of bytes it was given."""
    return sum(len(b) for b in blocks)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``."""
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def median_time(fn: Callable[[], Any], runs: int, expected: Any) -> float:
    """The median seconds of ``runs`` runs of ``fn``, each checked to return ``expected``."""
    times = []
    for _ in range(runs):
        seconds, value = timed(fn)
        assert value == expected, value
        times.append(seconds)
    return statistics.median(times)


def making_blocks(p: Params) -> float:
    """Seconds of CPU for this process to make the fan-in's blocks, on warm memory
    (the best of three): the work every system must do, whatever it does around it."""
    size = p.megabytes * MB
    make_block(0, size)
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for i in range(p.fanin):
            make_block(i, size)
        best = min(best, time.process_time() - t0)
    return best


def making_blocks_reused(p: Params) -> float:
    """:func:`making_blocks` in a process whose C allocator reuses freed memory, as
    shoal's task workers do (:mod:`shoal.agent.memory_reuse`): no page is faulted
    in again for the next block."""
    from shoal.agent.memory_reuse import MemoryReuse

    MemoryReuse()
    return making_blocks(p)


def tree_sum(n: int) -> int:
    """What the tree reduction must return."""
    return sum(i * i for i in range(n))


# --- Dask ----------------------------------------------------------------------------------


def run_dask(p: Params) -> Results:
    """The four workloads on ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)``."""
    import dask
    from distributed import Client, LocalCluster

    results: Results = {}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(noop, range(200), pure=False))  # warm up

        def noops() -> None:
            client.gather(client.map(noop, range(p.tasks), pure=False))

        seconds, _ = timed(noops)
        results["noop"] = p.tasks / seconds

        def tree() -> int:
            # The whole graph in one submission, as a Dask user writes a reduction
            # (faster here than a client.submit per node).
            layer = [dask.delayed(square, pure=False)(i) for i in range(p.leaves)]
            while len(layer) > 1:
                nxt = [
                    dask.delayed(add, pure=False)(layer[i], layer[i + 1])
                    for i in range(0, len(layer) - 1, 2)
                ]
                if len(layer) % 2:
                    nxt.append(layer[-1])
                layer = nxt
            return client.compute(layer[0]).result()

        seconds, value = timed(tree)
        assert value == tree_sum(p.leaves), value
        results["tree"] = seconds

        def chain() -> int:
            fut = client.submit(inc, 0, pure=False)
            fut.result()
            for _ in range(p.chain - 1):
                fut = client.submit(inc, fut, pure=False)
                fut.result()
            return fut.result()

        seconds, value = timed(chain)
        assert value == p.chain, value
        results["chain"] = seconds / p.chain * 1000

        def fanin() -> int:
            size = p.megabytes * MB
            blocks = [client.submit(make_block, i, size, pure=False) for i in range(p.fanin)]
            return client.submit(total_size, *blocks, pure=False).result()

        results["fanin"] = median_time(fanin, p.fanin_runs, p.fanin * p.megabytes * MB)
    return results


# --- Ray -----------------------------------------------------------------------------------


def run_ray(p: Params) -> Results:
    """The four workloads on ``ray.init(num_cpus=2)``."""
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        r_noop, r_square, r_add, r_inc = (ray.remote(f) for f in (noop, square, add, inc))
        r_make, r_total = ray.remote(make_block), ray.remote(total_size)
        results: Results = {}
        ray.get([r_noop.remote(i) for i in range(200)])  # warm up the workers

        def noops() -> None:
            ray.get([r_noop.remote(i) for i in range(p.tasks)])

        seconds, _ = timed(noops)
        results["noop"] = p.tasks / seconds

        def tree() -> int:
            layer = [r_square.remote(i) for i in range(p.leaves)]
            while len(layer) > 1:
                nxt = [r_add.remote(layer[i], layer[i + 1]) for i in range(0, len(layer) - 1, 2)]
                if len(layer) % 2:
                    nxt.append(layer[-1])
                layer = nxt
            return ray.get(layer[0])

        seconds, value = timed(tree)
        assert value == tree_sum(p.leaves), value
        results["tree"] = seconds

        def chain() -> int:
            ref = r_inc.remote(0)
            ray.get(ref)
            for _ in range(p.chain - 1):
                ref = r_inc.remote(ref)
                ray.get(ref)
            return ray.get(ref)

        seconds, value = timed(chain)
        assert value == p.chain, value
        results["chain"] = seconds / p.chain * 1000

        def fanin() -> int:
            size = p.megabytes * MB
            blocks = [r_make.remote(i, size) for i in range(p.fanin)]
            return ray.get(r_total.remote(*blocks))

        results["fanin"] = median_time(fanin, p.fanin_runs, p.fanin * p.megabytes * MB)
        return results
    finally:
        ray.shutdown()


# --- shoal ---------------------------------------------------------------------------------


def shoal_noops(
    c: Any, tasks: int, name: str = "no-ops", before: Callable[[str], None] | None = None
) -> float:
    """Seconds to run ``tasks`` independent no-op tasks in one session of the graph
    client ``c``; ``before(record name)`` runs once the session is open, untimed."""
    from shoal.graph import remote

    @remote(outputs=0)
    def s_noop(ctx: Any, i: int) -> None:
        noop(i)

    with c.new_session(name=name) as session:
        if before is not None:
            before(c.transport.records[session.session_id])

        def run() -> None:
            for i in range(tasks):
                s_noop(i)
            session.submit()
            session.wait_all()

        seconds, _ = timed(run)
    return seconds


def run_shoal(p: Params) -> Results:
    """The four workloads on a fresh local cluster of two agents, through shoal.graph."""
    from shoal import LocalCluster

    try:
        from shoal.graph import Client, Output, blob, remote
    except ImportError as exc:  # the engine has not landed in this checkout
        raise SystemExit(f"shoal: shoal.graph cannot run graphs here: {exc}") from exc

    @remote(outputs=Output(encode="pickle"))
    def s_square(ctx: Any, i: int) -> int:
        return square(i)

    @remote(outputs=Output(encode="pickle"), auto_load=True)
    def s_add(ctx: Any, a: int, b: int) -> int:
        return add(a, b)

    @remote(outputs=Output(encode="pickle"), auto_load=True)
    def s_inc(ctx: Any, x: int) -> int:
        return inc(x)

    @remote()
    def s_make(ctx: Any, seed: int, size: int) -> bytes:
        return make_block(seed, size)

    @remote(outputs=Output(encode="pickle"))
    def s_total(ctx: Any, blocks: list[Any]) -> int:
        return total_size(*(b.get_bytes() for b in blocks))

    results: Results = {}
    with (
        LocalCluster(["node-0", "node-1"], cpus=1) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
    ):
        shoal_noops(c, 200, name="warm-up")
        if "noop" in p.workloads:
            results["noop"] = p.tasks / shoal_noops(c, p.tasks)

        def tree() -> int:
            with c.new_session(name="tree") as session:
                layer = [s_square(i) for i in range(p.leaves)]
                while len(layer) > 1:
                    nxt = [s_add(layer[i], layer[i + 1]) for i in range(0, len(layer) - 1, 2)]
                    if len(layer) % 2:
                        nxt.append(layer[-1])
                    layer = nxt
                layer[0].output.keep()
                session.submit()
                return layer[0].output.fetch().load()

        if "tree" in p.workloads:
            seconds, value = timed(tree)
            assert value == tree_sum(p.leaves), value
            results["tree"] = seconds

        def chain() -> int:
            with c.new_session(name="chain") as session:
                previous = blob(0, encode="pickle")
                previous.keep()
                for _ in range(p.chain):
                    task = s_inc(previous)
                    task.output.keep()
                    session.submit()
                    task.wait()
                    previous.unkeep()
                    previous = task.output
                return previous.fetch().load()

        if "chain" in p.workloads:
            seconds, value = timed(chain)
            assert value == p.chain, value
            results["chain"] = seconds / p.chain * 1000

        def fanin() -> int:
            with c.new_session(name="fan-in") as session:
                size = p.megabytes * MB
                blocks = [s_make(i, size) for i in range(p.fanin)]
                total = s_total(blocks)
                total.output.keep()
                session.submit()
                return total.output.fetch().load()

        if "fanin" in p.workloads:
            expected = p.fanin * p.megabytes * MB
            results["fanin"] = median_time(fanin, p.fanin_runs, expected)
    return results


RUNNERS: dict[str, tuple[Callable[[Params], Results], str]] = {
    "shoal": (run_shoal, "shoal"),
    "dask": (run_dask, "distributed"),
    "ray": (run_ray, "ray"),
}


# --- report --------------------------------------------------------------------------------


def speedup(metric: Metric, value: float, reference: float) -> float:
    """How many times better ``value`` is than ``reference`` (> 1: better)."""
    return value / reference if metric.higher_is_better else reference / value


def best_peer(metric: Metric, measured: dict[str, Results]) -> tuple[str, float] | None:
    """The faster of the measured peers for ``metric``, or None if none was measured."""
    peers = [
        (name, measured[name][metric.key]) for name in PEERS if metric.key in measured.get(name, {})
    ]
    if not peers:
        return None
    pick = max if metric.higher_is_better else min
    return pick(peers, key=lambda item: item[1])


def report(
    measured: dict[str, Results],
    p: Params,
    bare: float | None = None,
    lockstep: float | None = None,
) -> None:
    """Print every figure with its ratio to the faster peer (and the no-ops' share
    of the bare pool's rate ``bare``, and of the lock-step pool's ``lockstep``)."""
    sizes = {
        "noop": f"{p.tasks:,} tasks",
        "tree": f"{p.leaves:,} leaves",
        "chain": f"{p.chain} tasks",
        "fanin": f"{p.fanin} x {p.megabytes} MB, median of {p.fanin_runs} runs",
    }
    for metric in METRICS:
        if not any(metric.key in results for results in measured.values()):
            continue
        print(f"\n{metric.title} ({sizes[metric.key]}), {metric.unit}:")
        peer = best_peer(metric, measured)
        for name in SYSTEMS:
            if metric.key not in measured.get(name, {}):
                continue
            value = measured[name][metric.key]
            line = f"  {name:<6} {value:>12,.2f} {metric.unit}"
            if peer is not None:
                line += f"   {speedup(metric, value, peer[1]):6.2f}x the faster peer ({peer[0]})"
            if metric.key == "noop" and bare:
                line += f"   {value / bare:6.1%} of the bare pool"
            if metric.key == "noop" and lockstep:
                line += f" ({value / lockstep:.0%} of the lock-step one)"
            print(line)
        if peer is None:
            print("  (no peer measured: no ratio)")


@contextlib.contextmanager
def no_ambient_controller() -> Iterator[None]:
    """shoal gets its own fresh cluster here, whatever SHOAL_ENDPOINT says."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("SHOAL_")}
    try:
        yield
    finally:
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", choices=SYSTEMS, help="run only this system (repeatable)"
    )
    parser.add_argument("--tasks", type=int, default=Params.tasks)
    parser.add_argument("--leaves", type=int, default=Params.leaves)
    parser.add_argument("--chain", type=int, default=Params.chain)
    parser.add_argument("--fanin", type=int, default=Params.fanin)
    parser.add_argument("--megabytes", type=int, default=Params.megabytes)
    parser.add_argument(
        "--fanin-runs", type=int, default=Params.fanin_runs, help="fan-in runs (median kept)"
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=[m.key for m in METRICS],
        help="run only this workload (repeatable; shoal only: the peers run all four)",
    )
    args = parser.parse_args()
    params = Params(
        args.tasks,
        args.leaves,
        args.chain,
        args.fanin,
        args.megabytes,
        tuple(args.workload or Params.workloads),
        args.fanin_runs,
    )

    from common import machine

    print(f"machine: {machine()}")
    from graph_bare import bare_chain, bare_pool
    from graph_bare_ws import bare_ws_chain

    bare = bare_pool(params.tasks, workers=2, batch=1)
    batched = bare_pool(params.tasks, workers=2, batch=16, window=64)
    # One task in flight per worker: the pool DESIGN.md and issue 13 quote (about
    # 21,600 tasks/s on the development VM). The reference above keeps 16 in
    # flight per worker, which is three to four times faster here.
    lockstep = bare_pool(params.tasks, workers=2, batch=1, window=1)
    print(
        f"bare warm pool, 2 workers: {bare:,.0f} tasks/s one task per message, 16 in flight "
        f"per worker (the reference), {batched:,.0f} tasks/s 16 per message; "
        f"{lockstep:,.0f} tasks/s with one task in flight per worker (lock-step)"
    )
    if "chain" in params.workloads:
        step, cpu = bare_chain(max(params.chain, 1000))
        print(
            f"chain floor: a bare chain through four Python processes laid out as shoal's "
            f"(client, controller, agent, task worker: six one-way messages, nothing else) "
            f"takes {step * 1000:.2f} ms and {cpu * 1e6:.0f} us of CPU per step here"
        )
        step, cpu = bare_ws_chain(max(params.chain, 5000))  # shorter runs of it vary far more
        print(
            f"chain floor over WebSockets: the same with shoal's transports (the client's "
            f"WebSocket, uvicorn in the middle, the agent's websockets client; graph_bare_ws) "
            f"takes {step * 1000:.2f} ms and {cpu * 1e6:.0f} us of CPU per step here"
        )
    if "fanin" in params.workloads:
        making = making_blocks(params)
        # In a process of its own: the allocator's settings are for good.
        with multiprocessing.get_context("fork").Pool(1) as pool:
            reused = pool.apply(making_blocks_reused, (params,))
        print(
            f"fan-in floor: making the {params.fanin} blocks takes {making:.2f} s of CPU here "
            f"with the C allocator's defaults, {reused:.2f} s with freed memory reused (as "
            f"shoal's workers do), so no system on 2 cpus does the fan-in in less than "
            f"{min(making, reused) / 2:.2f} s"
        )
    measured: dict[str, Results] = {}
    for name in args.only or SYSTEMS:
        run, module = RUNNERS[name]
        if importlib.util.find_spec(module) is None:
            print(f"{name}: skipped, '{module}' is not installed (pip install -e '.[bench]')")
            continue
        print(f"{name}: running...", flush=True)
        with no_ambient_controller():
            measured[name] = run(params)
    if measured:
        report(measured, params, bare, lockstep)


if __name__ == "__main__":
    main()
