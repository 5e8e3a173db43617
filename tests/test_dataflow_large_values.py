"""Large values through a pipe: every one arrives, in order, before the pipe ends.

A pipe's sender batches about 1 MB per frame and buffers up to 8 MB, so a
stream of 64 KB values ends with several batches still queued when the source
finishes; all of them must reach the receiver before the pipe's end does, also
when the receiver takes longer to drain them than the sender's finish timeout.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dataflow_helpers import blocks_network, rows
from shoal import LocalCluster
from shoal.dataflow import Coordinator, PicklePipe, load_network
from shoal.dataflow.control_link import TOKEN_BYTES
from shoal.dataflow.out_pipe import OutPipe
from shoal.dataflow.segments import Segment, items_of
from shoal.dataflow.transport import LOCAL_NODE, PipeLinks, Route

COUNT = 3000

NETWORK = blocks_network(64 * 1024, COUNT)


@pytest.mark.timeout(150)
def test_thousands_of_64_kb_values_all_arrive_in_order(tmp_path: Path) -> None:
    folder = tmp_path / "large_values"
    folder.mkdir()
    (folder / "config.py").write_text(NETWORK)
    network = load_network(folder)
    output = tmp_path / "out"
    with (
        LocalCluster(["agent-a", "agent-b"], workdir=tmp_path / "cluster") as cluster,
        Coordinator(network, cluster.client(), output, loopback=True, echo=False) as run,
    ):
        assert run.placements() == {1: "agent-a", 2: "agent-b", 3: "client"}
        assert run.wait(90), f"the network did not finish: {run.summary()}"
        assert run.error is None
    received = [int(row[0]) for row in rows(output / "3" / "received.csv")[1:]]
    missing = sorted(set(range(COUNT)) - set(received))
    assert not missing, f"{len(missing)} of {COUNT} values lost, from {missing[0]} on"
    assert received == list(range(COUNT))


def test_a_slow_receiver_gets_every_value_before_the_end() -> None:
    """The sender's finish waits while values keep leaving, not a fixed time
    (two LOCAL hosts' pipes, in process: the same writer as over a channel)."""
    token = secrets.token_bytes(TOKEN_BYTES)
    received: list[Any] = []
    ended = threading.Event()

    def deliver(pipe_id: int, segments: list[Segment]) -> None:
        time.sleep(0.1)  # a slow job: each 1 MB batch takes a while
        for segment in segments:
            received.extend(value for _, value in items_of(segment))

    def room(pipe_id: int) -> bool:
        return False  # deliver blocks: off the loop

    receiver = PipeLinks(token, 2, 1, None, deliver, lambda _: ended.set(), room)
    sender = PipeLinks(token, 1, 1, None, deliver, lambda _: None, room)
    receiver.start(serve=False)
    sender.start(serve=False)
    out = OutPipe(PicklePipe(1), sender)
    try:
        out.set_route(Route(LOCAL_NODE, receiver.in_endpoint, job=2, generation=1))
        values = [number.to_bytes(4, "big") * (16 * 1024) for number in range(300)]  # 64 KB
        for number, value in enumerate(values):
            out.put((0, number), value)
        # Up to 8 MB still queued, at 1 MB per 0.1 s: draining takes far longer than 0.3 s.
        out.finish(timeout=0.3)
        assert ended.wait(10), f"the pipe never ended ({len(received)} of 300 values came)"
        assert received == values
        assert out.dropped == 0
    finally:
        out.close()
        sender.stop()
        receiver.stop()
