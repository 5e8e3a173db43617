"""A million no-op tasks in one graph: the controller's peak memory.

Runs ``--tasks`` independent no-op tasks in one session of a fresh local
cluster (two agents of one cpu each) and prints the time, the controller's peak
RSS (``VmHWM``, read from /proc: the true peak, not a sample) and the client's.
The tasks go in submits of ``--part`` tasks (one frame of a million tasks would
pass the controller's 256 MiB frame limit); they are all in the one graph.

With several sizes (``--tasks 100000 200000``) it also prints the controller's
bytes per task between the two largest runs and what that makes of a million,
for a machine where a million takes too long::

    python benchmarks/graph_million.py                       # 1,000,000 tasks
    python benchmarks/graph_million.py --tasks 100000 200000 # and extrapolate

Measured on the shared 2-cpu VM (load ~5), back to back: with each task carrying
its pickled function, the controller peaked at 314 MB for 100k tasks and 478 MB
for 200k (1,716 bytes per task, about 1.8 GB for a million), the client at 510
and 672 MB; with the function sent once per session, 227 and 362 MB (1,414
bytes per task, about 1.4 GB for a million), the client 311 and 473 MB.
A whole million on a quiet VM (December 2026): 115 s (8,693 tasks/s), the
controller peaked at 765 MB (154 MB idle), the client at 1,661 MB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

MB = 2**20
LIMIT = 2 * 2**30  # the controller's budget for a million tasks


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def run(tasks: int, part: int) -> tuple[float, int, int]:
    """(seconds, controller peak bytes, controller bytes before) for ``tasks`` no-ops."""
    from shoal import LocalCluster
    from shoal.graph import Client, remote

    @remote(outputs=0)
    def s_noop(ctx: Any, i: int) -> None:
        return None

    with (
        LocalCluster(["node-0", "node-1"], cpus=1) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
    ):
        assert cluster.controller is not None
        pid = cluster.controller.proc.pid
        with c.new_session(name="warm-up") as session:
            for i in range(100):
                s_noop(i)
            session.submit()
            session.wait_all()
        before = peak_rss(pid)
        t0 = time.perf_counter()
        with c.new_session(name=f"{tasks} no-ops") as session:
            for start in range(0, tasks, part):
                for i in range(start, min(tasks, start + part)):
                    s_noop(i)
                session.submit()
            session.wait_all()
        seconds = time.perf_counter() - t0
        return seconds, peak_rss(pid), before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--part", type=int, default=100_000, help="tasks per submit")
    args = parser.parse_args()
    from common import machine
    from graph import no_ambient_controller

    print(f"machine: {machine()}")
    measured: list[tuple[int, int]] = []
    for tasks in args.tasks:
        with no_ambient_controller():
            seconds, peak, before = run(tasks, args.part)
        client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        measured.append((tasks, peak))
        print(
            f"{tasks:>9,} no-op tasks: {seconds:6.1f} s ({tasks / seconds:,.0f} tasks/s), "
            f"controller peak {peak / MB:,.0f} MB (idle {before / MB:,.0f} MB), "
            f"client peak so far {client_peak / MB:,.0f} MB",
            flush=True,
        )
    if len(measured) >= 2:
        (n1, p1), (n2, p2) = sorted(measured)[-2:]
        per_task = (p2 - p1) / (n2 - n1)
        million = p2 + per_task * (1_000_000 - n2)
        verdict = "within" if million < LIMIT else "OVER"
        print(
            f"controller: {per_task:,.0f} bytes per task between {n1:,} and {n2:,}; "
            f"a million tasks: about {million / MB:,.0f} MB ({verdict} the 2 GB budget)"
        )


if __name__ == "__main__":
    main()
