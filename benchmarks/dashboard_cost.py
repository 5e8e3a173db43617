"""The cost of watching: the 10k-task graph and the 1+20 flags barrier with ten
dashboard pages open and live, against none (goal: a ratio within 1.10).

Each workload runs on a fresh local cluster, ``--runs`` times unwatched and
``--runs`` times watched, alternating which goes first (a busy machine's drift
hits both alike). The watchers are ten dashboard pages in Debian's Chromium,
driven by Playwright (``--watchers browser``, the default), or ten plain
event-stream clients reading ``/api/events`` as the pages do (``--watchers
sse``). Of the ten, eight show the running experiment's page, one the
experiments list and one the nodes; they are opened once the experiment exists
and are live before the timed part starts. On one machine the browsers' own
rendering competes with the controller for the same cores, so the browser
figure is an upper bound; the controller's CPU seconds per run are printed too.

Measured on the 2-cpu development VM while a test suite ran beside it (load
average about 20, so single runs swing by 30 %): with event-stream clients the
controller's CPU per run was unchanged (graph x0.99, barrier x1.00) and the
wall-time ratios were 0.79 (graph) and 1.15 (barrier), noise either way; with
ten Chromium pages on the same two cores, graph 1.17 and barrier 2.1, the
browsers themselves taking 1.3 CPU seconds of a 2 s barrier run.

    python benchmarks/dashboard_cost.py                        # both, 3 runs each
    python benchmarks/dashboard_cost.py --only graph --tasks 2000 --runs 2
    python benchmarks/dashboard_cost.py --watchers sse
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil
from common import flags_pipelines, machine, timed_run
from graph import no_ambient_controller, shoal_noops

from shoal import Experiment, LocalCluster

CHROMIUM = "/usr/bin/chromium"
GOAL = 1.10
LIVE_TIMEOUT = 60.0  # seconds for every watcher to be live on a new experiment


def routes(name: str, count: int) -> list[dict[str, Any]]:
    """What each of ``count`` watchers looks at: the experiment, but one the list and one
    the nodes."""
    out: list[dict[str, Any]] = [{"experiment": name} for _ in range(max(0, count - 2))]
    return [*out, {"topic": "experiments"}, {"topic": "nodes"}][:count]


class Watchers(Protocol):
    def watch(self, name: str) -> None:
        """Open every watcher on experiment ``name``; return once all are live."""

    def idle(self) -> None:
        """Close every watcher's stream (the browser stays, on a blank page)."""

    def close(self) -> None: ...


def log_in(endpoint: str, login: str, password: str) -> str:
    reply = httpx.post(f"{endpoint}/api/token", json={"login": login, "password": password})
    reply.raise_for_status()
    return str(reply.json()["access_token"])


class BrowserWatchers:
    """Dashboard pages in Chromium, one browser context each (as ten people would)."""

    def __init__(self, endpoint: str, login: str, password: str, count: int) -> None:
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():
            raise SystemExit(f"{CHROMIUM} is missing: sh scripts/install-test-deps.sh")
        self.endpoint = endpoint
        self.count = count
        token = log_in(endpoint, login, password)
        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"]
        )
        # Logged in as the login page would: the token in the tab's sessionStorage.
        script = (
            f"try {{ sessionStorage.setItem('shoal.token', {json.dumps(token)});"
            f" sessionStorage.setItem('shoal.login', {json.dumps(login)}); }} catch (e) {{}}"
        )
        self.pages = []
        for _ in range(count):
            context = self.browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(script)
            self.pages.append(context.new_page())

    def watch(self, name: str) -> None:
        from urllib.parse import quote

        from playwright.sync_api import expect

        for page, route in zip(self.pages, routes(name, self.count), strict=True):
            if "experiment" in route:
                fragment = f"#/experiments/{quote(name, safe='')}"
            else:
                fragment = "#/experiments" if route["topic"] == "experiments" else "#/nodes"
            page.goto(f"{self.endpoint}/{fragment}")
        for page in self.pages:
            expect(page.get_by_test_id("live-status")).to_have_text(
                "live", timeout=LIVE_TIMEOUT * 1000
            )

    def idle(self) -> None:
        for page in self.pages:
            page.goto("about:blank")

    def close(self) -> None:
        self.browser.close()
        self._playwright.stop()


@dataclass
class _Stream:
    params: dict[str, Any]
    live: threading.Event = field(default_factory=threading.Event)
    events: int = 0


class SseWatchers:
    """Event-stream clients reading /api/events as the pages do, in one thread's loop."""

    def __init__(self, endpoint: str, login: str, password: str, count: int) -> None:
        self.endpoint = endpoint
        self.count = count
        self.headers = {"Authorization": f"Bearer {log_in(endpoint, login, password)}"}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._running: Future[None] | None = None
        self._stop = asyncio.Event()

    async def _follow(self, client: httpx.AsyncClient, stream: _Stream) -> None:
        async with client.stream(
            "GET", "/api/events", params=stream.params, headers=self.headers
        ) as reply:
            reply.raise_for_status()
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    json.loads(line[6:])  # as a page does with every event
                    stream.events += 1
                    stream.live.set()

    async def _all(self, streams: list[_Stream]) -> None:
        async with httpx.AsyncClient(base_url=self.endpoint, timeout=None) as client:
            followers = [asyncio.create_task(self._follow(client, s)) for s in streams]
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait([stopping, *followers], return_when=asyncio.FIRST_COMPLETED)
            for task in [stopping, *followers]:
                task.cancel()
            # Every stream is closed before the client is: nothing is left running.
            await asyncio.gather(stopping, *followers, return_exceptions=True)

    def watch(self, name: str) -> None:
        streams = [_Stream(route) for route in routes(name, self.count)]
        self._stop = asyncio.Event()
        self._running = asyncio.run_coroutine_threadsafe(self._all(streams), self.loop)
        for stream in streams:
            if not stream.live.wait(LIVE_TIMEOUT):
                raise RuntimeError(f"a watcher of {stream.params} got nothing")

    def idle(self) -> None:
        if self._running is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            self._running.result(30)
            self._running = None

    def close(self) -> None:
        self.idle()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Side:
    """The runs of one side (watched or not): wall seconds and controller CPU seconds."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    watchers: list[float] = field(default_factory=list)  # CPU s of this process's children


class CpuMeter:
    """CPU seconds the controller, and the browsers (or this process, for event-stream
    clients), spent between ``start`` and ``stop``."""

    def __init__(self, cluster: LocalCluster) -> None:
        assert cluster.controller is not None
        self.controller = psutil.Process(cluster.controller.proc.pid)
        self._at = (0.0, 0.0)

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            return times.user + times.system
        return 0.0

    def _watchers(self) -> float:
        me = psutil.Process()
        browsers = [p for p in me.children(recursive=True) if "chrom" in p.name().lower()]
        return sum(self._cpu(p) for p in browsers) + self._cpu(me)

    def start(self) -> None:
        self._at = (self._cpu(self.controller), self._watchers())

    def stop(self) -> tuple[float, float]:
        return self._cpu(self.controller) - self._at[0], self._watchers() - self._at[1]


@contextlib.contextmanager
def watchers_for(kind: str, cluster: LocalCluster, count: int) -> Iterator[Watchers]:
    cls = BrowserWatchers if kind == "browser" else SseWatchers
    w = cls(cluster.endpoint, cluster.login, cluster.password, count)
    try:
        yield w
    finally:
        w.close()


def alternate(runs: int, one: Callable[[bool, int], None]) -> None:
    """``one(watched, run)`` for each run, both sides, which goes first alternating."""
    for run in range(runs):
        for watched in (False, True) if run % 2 == 0 else (True, False):
            one(watched, run)


def graph_cost(args: argparse.Namespace) -> dict[bool, Side]:
    from shoal.graph import Client

    sides = {False: Side(), True: Side()}
    with (
        LocalCluster(["node-0", "node-1"]) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
        watchers_for(args.watchers, cluster, args.pages) as watchers,
    ):
        meter = CpuMeter(cluster)
        shoal_noops(c, 200, name="warm-up")

        def one(watched: bool, run: int) -> None:
            def before(name: str) -> None:
                if watched:
                    watchers.watch(name)
                meter.start()

            seconds = shoal_noops(c, args.tasks, f"noops-{run}", before)
            cpu, watching = meter.stop()
            watchers.idle()
            sides[watched].walls.append(seconds)
            sides[watched].cpus.append(cpu)
            sides[watched].watchers.append(watching)
            print(f"  graph run {run} {'watched' if watched else 'unwatched'}: {seconds:.2f} s")

        alternate(args.runs, one)
    return sides


def barrier_cost(args: argparse.Namespace) -> dict[bool, Side]:
    sides = {False: Side(), True: Side()}
    server_pipeline, clients_pipeline = flags_pipelines(args.clients)
    names = ["snl-server-5", *(f"raspi-{i:02d}" for i in range(args.clients))]
    with (
        LocalCluster(names) as cluster,
        cluster.client() as client,
        watchers_for(args.watchers, cluster, args.pages) as watchers,
    ):
        meter = CpuMeter(cluster)
        nodes = client.get_nodes()
        server = nodes.filter(lambda n: n.name.startswith("snl")).take(1)
        clients = nodes.filter(lambda n: n.name.startswith("raspi")).take(args.clients)

        def experiment() -> Experiment:
            return Experiment().map(server_pipeline, server).map(clients_pipeline, clients)

        timed_run(client, experiment(), "warm-up")

        def one(watched: bool, run: int) -> None:
            name = f"barrier-{run}-{'watched' if watched else 'unwatched'}"

            def before() -> None:
                if watched:
                    watchers.watch(name)
                meter.start()

            _, seconds = timed_run(client, experiment(), name, before)
            cpu, watching = meter.stop()
            watchers.idle()
            sides[watched].walls.append(seconds)
            sides[watched].cpus.append(cpu)
            sides[watched].watchers.append(watching)
            print(f"  barrier run {run} {'watched' if watched else 'unwatched'}: {seconds:.3f} s")

        alternate(args.runs, one)
    return sides


def report(title: str, sides: dict[bool, Side], args: argparse.Namespace) -> None:
    none, watched = sides[False], sides[True]
    wall0, wall1 = statistics.median(none.walls), statistics.median(watched.walls)
    cpu0, cpu1 = statistics.median(none.cpus), statistics.median(watched.cpus)
    ratio = wall1 / wall0
    print(f"\n{title}, {args.runs} runs each side, {args.pages} {args.watchers} watchers:")
    client0, client1 = statistics.median(none.watchers), statistics.median(watched.watchers)
    print(
        f"  unwatched: median {wall0:8.3f} s   controller cpu {cpu0:7.2f} s/run"
        f"   this script + browsers {client0:6.2f} s/run"
    )
    print(
        f"  watched:   median {wall1:8.3f} s   controller cpu {cpu1:7.2f} s/run"
        f"   this script + browsers {client1:6.2f} s/run"
    )
    verdict = "within" if ratio <= GOAL else "OVER"
    print(f"  ratio {ratio:.3f} ({verdict} the {GOAL:.2f} goal); controller cpu x{cpu1 / cpu0:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("graph", "barrier"))
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--watchers", choices=("browser", "sse"), default="browser")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with no_ambient_controller():
        if args.only in (None, "graph"):
            print(f"graph: {args.tasks:,} no-op tasks", flush=True)
            report(f"{args.tasks:,}-task graph", graph_cost(args), args)
        if args.only in (None, "barrier"):
            print(f"barrier: 1 server + {args.clients} clients", flush=True)
            report(f"flags barrier 1+{args.clients}", barrier_cost(args), args)


if __name__ == "__main__":
    main()
