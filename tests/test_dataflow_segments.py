"""A pipe's values travel as runs of consecutive keys: whatever the keys and
heads, the receiver gets every (key, value, head) in the order it was put."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from shoal.dataflow import PicklePipe
from shoal.dataflow.control_link import TOKEN_BYTES
from shoal.dataflow.out_pipe import OutPipe
from shoal.dataflow.rounds import InputAligner
from shoal.dataflow.segments import Segment, items_of
from shoal.dataflow.transport import LOCAL_NODE, PipeLinks, Route


def through_a_pipe(puts: list[tuple[tuple[int, int], Any, int]]) -> list[tuple[Any, ...]]:
    """Send ``puts`` through one pipe between two LOCAL hosts; what came, as
    ``(key, value, head)`` each."""
    token = secrets.token_bytes(TOKEN_BYTES)
    received: list[tuple[Any, ...]] = []
    ended = threading.Event()

    def deliver(pipe_id: int, segments: list[Segment]) -> None:
        for segment in segments:
            for item in items_of(segment):
                received.append(item if len(item) == 3 else (*item, 0))

    receiver = PipeLinks(token, 2, 1, None, deliver, lambda _: ended.set(), lambda _: True)
    sender = PipeLinks(token, 1, 1, None, deliver, lambda _: None, lambda _: True)
    receiver.start(serve=False)
    sender.start(serve=False)
    out = OutPipe(PicklePipe(1), sender)
    try:
        out.set_route(Route(LOCAL_NODE, receiver.in_endpoint, job=2, generation=1))
        for key, value, head in puts:
            out.put(key, value, head)
        out.finish()
        assert ended.wait(10), f"the pipe never ended ({len(received)} values came)"
        assert out.dropped == 0
    finally:
        out.close()
        sender.stop()
        receiver.stop()
    return received


def test_gaps_repeats_epochs_and_heads_keep_their_keys_and_order() -> None:
    puts = [
        ((0, 0), "a", 0),
        ((0, 1), "b", 0),
        ((0, 2), "c", 0b0010_0000),  # the first head starts a run with heads
        ((0, 3), "d", 0),
        ((0, 7), "e", 0),  # a gap
        ((0, 7), "f", 0),  # a repeated key
        ((0, 8), "g", 0b1000_0000),
        ((1, 0), "h", 0),  # a new epoch
        ((1, 1), "i", 0),
    ]
    assert through_a_pipe(puts) == puts


def test_large_values_split_over_batches_keep_their_keys_and_heads() -> None:
    # 64 KB each: the writer sends about 1 MB per message, so runs are split.
    puts = [((0, n), n.to_bytes(4, "big") * (16 * 1024), n % 3) for n in range(200)]
    assert through_a_pipe(puts) == puts


def test_one_plain_input_takes_segments_as_rounds() -> None:
    aligner = InputAligner([PicklePipe(1)])
    aligner.put_segments(1, [[0, 5, ["x", "y"], None], [0, 9, ["z"], [4]]])
    aligner.end(1)
    assert aligner.next_rounds_with_heads() == [
        ((0, 5), ("x",), (0,)),
        ((0, 6), ("y",), (0,)),
        ((0, 9), ("z",), (4,)),
    ]
    assert aligner.next_rounds_with_heads() == []


def test_segments_taken_after_single_rounds_start_where_those_ended() -> None:
    aligner = InputAligner([PicklePipe(1)])
    aligner.put_segments(1, [[2, 0, ["a", "b", "c"], [1, 2, 3]]])
    aligner.put_many(1, [((2, 3), "d")])
    assert aligner.next_round() == ((2, 0), ("a",))
    assert aligner.next_segments() == [[2, 1, ["b", "c"], [2, 3]], [2, 3, ["d"], None]]
    assert aligner.has_room(1)
