"""Task workers keep freed memory for their next task, and give it back once idle
(shoal.agent.memory_reuse)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from shoal import LocalCluster
from shoal.agent.memory_reuse import KEPT, kept_for
from shoal.graph import Client, remote
from waiting import wait_until

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator"),
]

MB = 1024 * 1024

# Makes and frees a 5 MB random block ten times, as graph.py's fan-in does;
# prints the page faults that took.
FAULTS = """
import random, resource, sys
if sys.argv[1] == "reuse":
    from shoal.agent.memory_reuse import MemoryReuse
    assert MemoryReuse().active
block = random.randbytes(5 << 20); del block  # the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block = random.randbytes(5 << 20); del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    # In a process of its own: the settings are for good.
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return int(out.stdout)


def test_a_small_node_keeps_less() -> None:
    # A Raspberry Pi with 1 GB and 4 cpus: 32 MB a worker, 128 MB in all.
    assert kept_for(1024 * MB, 4) == 32 * MB
    assert kept_for(24 * 1024 * MB, 2) == KEPT


def test_a_freed_block_is_reused_without_faulting_its_pages_in_again() -> None:
    # A block is 1,280 pages. With glibc's defaults, making one (an int, then its
    # bytes) faults each page in again, every time.
    assert faults("default") > 10 * 1280
    assert faults("reuse") < 1280


@remote()
def churn(ctx: Any) -> bytes:
    """Holds 200 MB for a moment, then frees it."""
    blocks = [b"x" * (20 * MB) for _ in range(10)]
    return str(sum(len(b) for b in blocks)).encode()


def worker_rss(agent_pid: int) -> list[int]:
    workers = [
        p
        for p in psutil.Process(agent_pid).children(recursive=True)
        if "task_worker" in " ".join(p.cmdline())
    ]
    return [p.memory_info().rss for p in workers]


def test_an_idle_worker_gives_the_memory_its_tasks_freed_back(tmp_path: Path) -> None:
    with (
        LocalCluster(["reuse-1"], workdir=tmp_path / "cluster", cpus=1) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
        c.new_session() as session,
    ):
        task = churn()
        task.output.keep()
        session.submit()
        assert task.output.fetch().get_bytes() == str(200 * MB).encode()
        agent = cluster.agents["reuse-1"].pid
        # A second later the worker is idle and has given the 200 MB back.
        rss = wait_until(
            lambda: (sizes := worker_rss(agent)) and max(sizes) < 100 * MB and sizes,
            30,
            "the idle task worker to give its freed memory back",
        )
        assert len(rss) == 1
