"""Flag operations a second: through the REST API and from executors, beside their limits.

For each store (SQLite, and PostgreSQL from tests/pgserver.py) it prints:

- REST: atomic increments from ``--clients`` concurrent kept-alive HTTP
  connections, beside a bare FastAPI endpoint that does nothing (same client,
  same connections; the client is a bare HTTP/1.1 loop, so the servers set the
  rates);
- executors: ``--steps`` concurrent pipeline steps (spread over two agents)
  each incrementing one flag ``--per-step`` times, with the CPU each kind of
  process spent per operation (on a shared machine the rate moves with the
  load; the CPU per operation, and the ceiling it sets on this machine's
  cores, much less);
- PostgreSQL only: a bare asyncpg loop doing the same updates (one committed
  UPDATE per operation from ``--clients`` connections, and from one), the
  store's own limit for acknowledged-when-durable increments.

Every run checks the flag ends at exactly the number of acknowledged increments.
The throwaway PostgreSQL server runs with fsync off (tests/pgserver.py), so its
commits cost what a server with a battery-backed cache would charge.

    python benchmarks/flags_ops.py [--store sqlite|postgres|both] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from common import ROOT, machine

from shoal import Experiment, LocalCluster, Pipeline
from shoal.model.pipeline import Task

sys.path.insert(0, str(ROOT / "tests"))


class IncrementMany(Task):
    """A pipeline step that increments ``flag`` ``count`` times; (count, first, last) times."""

    def __init__(self, flag: str, count: int, name: str) -> None:
        super().__init__(name)
        self.flag, self.count = flag, count

    def run(self) -> tuple[int, float, float]:
        from shoal.client.executor_flags import executor_flags

        flags = executor_flags()
        first = time.time()
        for _ in range(self.count):
            flags.increment(self.flag)
        return self.count, first, time.time()


@dataclass
class _Run:
    """When the timed part of a run ends; set once every connection is warm."""

    warm: asyncio.Barrier
    go: asyncio.Event = field(default_factory=asyncio.Event)
    deadline: float = 0.0


async def _post_loop(host: str, port: int, request: bytes, run: _Run) -> int:
    """POST on one kept-alive connection until the run's deadline: how many got a 2xx.

    A bare HTTP/1.1 client on asyncio streams (microseconds a request): httpx
    spends about a millisecond of CPU on each, so with it the client, not the
    server, set both rates and their ratio came out near 1 whatever the server did.
    """
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:

        async def one() -> None:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            if not 200 <= status < 300:
                raise RuntimeError(f"HTTP {status}: {head[:200]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)

        await one()  # warm: the flag loaded, the connection open
        await run.warm.wait()
        await run.go.wait()
        while time.perf_counter() < run.deadline:
            await one()
            done += 1
    finally:
        writer.close()
    return done


async def _hammer(
    endpoint: str, token: str, path: str, clients: int, seconds: float
) -> tuple[int, float]:
    """POST ``path`` from ``clients`` kept-alive connections for ``seconds``, after
    one warm-up POST each; (acknowledged in the timed part, elapsed)."""
    url = urlsplit(endpoint)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    run = _Run(asyncio.Barrier(clients + 1))
    async with asyncio.TaskGroup() as tg:
        loops = [tg.create_task(_post_loop(host, port, request, run)) for _ in range(clients)]
        await run.warm.wait()
        start = time.perf_counter()
        run.deadline = start + seconds
        run.go.set()
    return sum(loop.result() for loop in loops), time.perf_counter() - start


@contextlib.contextmanager
def bare_fastapi(workdir: Path) -> Iterator[str]:
    """A FastAPI app on uvicorn with one POST endpoint that does nothing; its URL."""
    from processes import free_port, read_until

    port = free_port()
    script = workdir / "bare_app.py"
    script.write_text(
        textwrap.dedent(
            """
            from fastapi import FastAPI
            app = FastAPI()

            @app.post("/noop")
            async def noop() -> dict:
                return {"ok": True}
            """
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "info",
            "--no-access-log",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        read_until(proc.stderr, "Uvicorn running", 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def rest_figures(cluster: LocalCluster, clients: int, seconds: float, bare_url: str) -> None:
    client = cluster.client()
    client.open_run("rest-bench")
    path = "/api/experiments/rest-bench/flags/counter/increment"
    acked, elapsed = asyncio.run(_hammer(cluster.endpoint, client.token(), path, clients, seconds))
    stored = client.get_flag_values("rest-bench", "counter").int_value
    assert stored == acked + clients, f"flag holds {stored}, {acked} increments were acknowledged"
    noop, noop_s = asyncio.run(_hammer(bare_url, "-", "/noop", clients, seconds))
    rate, bare = acked / elapsed, noop / noop_s
    print(
        f"  REST increments, {clients} connections: {rate:8.0f} ops/s "
        f"(bare FastAPI no-op endpoint {bare:.0f}/s; ratio {bare / rate:.2f}x)"
    )


class CpuWatch:
    """CPU seconds of the cluster's controller, agents and executors, by kind,
    sampled until stopped (executors exit when their pipeline ends: their last
    sample stands for them)."""

    KINDS = ("controller", "agents", "executors")

    def __init__(self, cluster: LocalCluster) -> None:
        assert cluster.controller is not None
        self._roots = [cluster.controller.proc.pid, *(p.pid for p in cluster.agents.values())]
        self._last: dict[int, tuple[str, float]] = {}
        self._first: dict[int, float] = {}
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _kind(proc: psutil.Process) -> str | None:
        command = " ".join(proc.cmdline())
        if "executor_main" in command:
            return "executors"
        if "task_worker" in command:
            return None  # warm graph workers: not on the flag path
        return "agents" if " agent" in command else "controller"

    def _sample(self) -> None:
        for root in self._roots:
            with contextlib.suppress(psutil.Error):
                top = psutil.Process(root)
                for proc in [top, *top.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        kind = self._kind(proc)
                        if kind is not None:
                            times = proc.cpu_times()
                            cpu = times.user + times.system
                            self._first.setdefault(proc.pid, cpu)
                            self._last[proc.pid] = (kind, cpu)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds by kind since this watch began."""
        self._stop.set()
        self._thread.join()
        self._sample()
        spent = dict.fromkeys(self.KINDS, 0.0)
        for pid, (kind, cpu) in self._last.items():
            spent[kind] += cpu - self._first[pid]
        return spent


def executor_figures(cluster: LocalCluster, steps: int, per_step: int) -> float:
    client = cluster.client()
    nodes = client.get_nodes()
    half = steps // len(nodes)
    experiment = Experiment()
    for index, node in enumerate(nodes):
        tasks = [IncrementMany("counter", per_step, f"inc-{index}-{i}") for i in range(half)]
        here = nodes.filter(lambda n, name=node.name: n.name == name)
        experiment = experiment.map(Pipeline().then(tasks), here)
    name = "executor-bench"
    client.prepare_experiment(experiment, name)
    client.wait(name, until="ready", timeout=120)
    watch = CpuWatch(cluster)
    client.start_execution(name)
    info = client.wait(name, timeout=600)
    spent = watch.stop()
    assert all(r.result.is_success for r in info.execution_result), info
    spans = [step[0].unwrap() for r in info.execution_result for step in r.result.unwrap().values()]
    total = sum(s[0] for s in spans)
    elapsed = max(s[2] for s in spans) - min(s[1] for s in spans)
    stored = client.get_flag_values(name, "counter").int_value
    assert stored == total, f"flag holds {stored}, {total} increments were acknowledged"
    rate = total / elapsed
    print(f"  executor increments, {len(spans)} concurrent steps: {rate:8.0f} ops/s")
    per_op = {kind: seconds / total * 1e6 for kind, seconds in spent.items()}
    cores = os.cpu_count() or 1
    print(
        "    CPU per op: "
        + ", ".join(f"{kind} {us:.0f} µs" for kind, us in per_op.items())
        + f"; all three {sum(per_op.values()):.0f} µs: at most "
        f"{cores / sum(per_op.values()) * 1e6:.0f} ops/s on {cores} cores before the store"
    )
    return rate


async def _asyncpg_limit(dsn: str, clients: int, seconds: float) -> tuple[float, float]:
    """One committed UPDATE per increment, as the store's limit: (ops/s with
    ``clients`` connections, ops/s with one)."""
    import asyncpg

    setup = await asyncpg.connect(dsn)
    await setup.execute("CREATE TABLE IF NOT EXISTS bench_flags (name text primary key, n int)")
    await setup.execute("INSERT INTO bench_flags VALUES ('c', 0) ON CONFLICT DO NOTHING")
    await setup.close()
    update = "UPDATE bench_flags SET n = n + 1 WHERE name = 'c' RETURNING n"

    async def run(connections: int) -> float:
        conns = [await asyncpg.connect(dsn) for _ in range(connections)]
        done = 0
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(conn: asyncpg.Connection) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await conn.fetchval(update)
                done += 1

        async with asyncio.TaskGroup() as tg:
            for conn in conns:
                tg.create_task(worker(conn))
        elapsed = time.perf_counter() - start
        for conn in conns:
            await conn.close()
        return done / elapsed

    return await run(clients), await run(1)


def one_store(label: str, db_url: str | None, dsn: str | None, args: argparse.Namespace) -> None:
    print(f"{label}:")
    with tempfile.TemporaryDirectory(prefix="shoal-flags-bench-") as tmp:
        with bare_fastapi(Path(tmp)) as bare_url, LocalCluster([], db_url=db_url) as cluster:
            rest_figures(cluster, args.clients, args.seconds, bare_url)
        if args.steps:
            with LocalCluster(["node-0", "node-1"], db_url=db_url) as cluster:
                executor_figures(cluster, args.steps, args.per_step)
    if dsn is not None:
        many, one = asyncio.run(_asyncpg_limit(dsn, args.clients, args.seconds))
        print(
            f"  bare asyncpg, one committed UPDATE per op: {many:8.0f} ops/s from "
            f"{args.clients} connections, {one:.0f} ops/s from one"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=32, help="0: no executor run")
    parser.add_argument("--per-step", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.store in ("sqlite", "both"):
        one_store("SQLite", None, None, args)
    if args.store in ("postgres", "both"):
        from pgserver import PostgresServer

        with PostgresServer() as pg:
            one_store("PostgreSQL", pg.url, pg.dsn, args)


if __name__ == "__main__":
    sys.exit(main())
