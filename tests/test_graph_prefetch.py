"""Inputs move ahead of a task that still waits for others (issue 14, fan-in):
while a consumer's last input is still being made, the inputs made on the other
node are already on the consumer's node; then it runs there, and its result is
right. The object records show where each object is (their ``placement``)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from shoal import LocalCluster
from shoal.graph import Client, remote
from waiting import wait_until


# The agents have 2 cpus each: a producer that takes 2 has a node to itself.
@remote(cpus=2)
def make(ctx: Any, seed: str) -> bytes:
    return hashlib.sha256(seed.encode()).digest() * 10_000  # 320 KB: over the inline limit


@remote()
def gate(ctx: Any, fifo: str) -> bytes:
    """The consumer's last input: finished only when the test writes to ``fifo``."""
    with open(fifo, "rb") as f:
        return f.read()


@remote()
def digest(ctx: Any, first: Any, second: Any, go: Any) -> str:
    return hashlib.sha256(first.get_bytes() + second.get_bytes() + go.get_bytes()).hexdigest()


def open_writer(fifo: Path) -> int | None:
    """The FIFO opened for writing; None while no one reads it."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


def release(fifo: Path, timeout: float) -> None:
    """Write to the FIFO once its reader (the gate task) has it open."""
    fd = wait_until(lambda: open_writer(fifo), timeout, "the gate task to open its FIFO")
    try:
        os.write(fd, b"go")
    finally:
        os.close(fd)


def placement(record: dict[str, Any], obj: int) -> list[str]:
    """Where the record says object ``obj`` is (nowhere before its first write)."""
    rows = [o for o in record.get("objects", []) if o["id"] == obj]
    if not rows:
        return []
    info = rows[0]["info"]
    return (json.loads(info) if isinstance(info, str) else info)["placement"]


@pytest.mark.timeout(120)
def test_remote_inputs_are_on_the_consumers_node_before_its_last_input(tmp_path: Path) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    with (
        LocalCluster(["ahead-1", "ahead-2"], workdir=tmp_path / "cluster", cpus=2) as cluster,
        Client(endpoint=cluster.endpoint, login=cluster.login, password=cluster.password) as c,
        c.new_session("prefetch") as session,
    ):
        # The producers take a node each; the gate waits for a free cpu behind
        # them, and the consumer for all three.
        a, b = make("a"), make("b")
        last = gate(str(fifo))
        both = digest(a.output, b.output, last.output)
        both.output.keep()
        session.submit()
        session.wait([a, b])
        session.update([a, b])
        assert {a.info.node, b.info.node} == {"ahead-1", "ahead-2"}
        name = c.transport.records[session.session_id]
        client = cluster.client()

        def moved_ahead() -> str | None:
            record = client.raw_status(name)
            first, second = placement(record, a.output.id.id), placement(record, b.output.id.id)
            # Both objects on one node: that node holds its own and was sent the other.
            common = set(first) & set(second)
            return common.pop() if len(common) == 1 else None

        try:
            plan = wait_until(moved_ahead, 30, "both inputs on one node before the last is made")
        finally:
            # Never leave the gate task blocked (the cluster's stop would wait for it).
            release(fifo, 30)
        expected = hashlib.sha256(
            hashlib.sha256(b"a").digest() * 10_000 + hashlib.sha256(b"b").digest() * 10_000 + b"go"
        ).hexdigest()
        assert both.output.fetch().get_str() == expected
        session.update([both])
        assert both.info.node == plan
