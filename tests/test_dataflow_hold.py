"""A pipe holds its values while the controller cannot be reached (it may be
restarting), but not once its run is stopping: then the hold ends at once and
the values are dropped, so a Ctrl-C never waits for a controller that stopped
with the run."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.dataflow import PicklePipe
from shoal.dataflow.control_link import TOKEN_BYTES, ControlLink, read_token
from shoal.dataflow.host import HostSpec, JobHost
from shoal.dataflow.jobs import BaseJob, JobContext
from shoal.dataflow.out_pipe import UNREACHABLE_PATIENCE, OutPipe
from shoal.dataflow.transport import LOCAL_NODE, PipeLinks, Reach, Route, endpoint_name

# How long a test watches a pipe to see that it holds (far below UNREACHABLE_PATIENCE:
# a pipe that does not hold gives up at once, one that holds waits minutes).
WATCH = 2.0
PROMPTLY = 10.0  # a stopping run's pipe ends well within this, however loaded the machine


@pytest.fixture
def nobody() -> str:
    """A controller URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def a_route(token: bytes) -> Route:
    """Where a pipe's receiver is: job 2 on a node, reached through the controller."""
    return Route("node-x", endpoint_name(token, "in", 2, 1), job=2, generation=1)


@pytest.fixture
def links(nobody: str) -> Iterator[PipeLinks]:
    token = secrets.token_bytes(TOKEN_BYTES)
    links = PipeLinks(token, 1, 1, Reach(nobody, lambda: "t"), _no_input, _no_end, _room)
    links.start(serve=False)
    try:
        yield links
    finally:
        links.stop()


def _no_input(pipe_id: int, segments: Any) -> None:
    raise AssertionError("this host has no inputs")


def _no_end(pipe_id: int) -> None:
    raise AssertionError("this host has no inputs")


def _room(pipe_id: int) -> bool:
    return True


def finish_in_thread(out: OutPipe) -> threading.Event:
    finished = threading.Event()

    def finish() -> None:
        out.finish()
        finished.set()

    threading.Thread(target=finish, daemon=True).start()
    return finished


def test_a_pipe_holds_while_the_controller_is_away_until_its_run_stops(
    links: PipeLinks,
) -> None:
    assert UNREACHABLE_PATIENCE > 10 * WATCH
    out = OutPipe(PicklePipe(1), links)
    try:
        out.set_route(a_route(links.token))
        for n in range(3):
            out.put((0, n), n)
        finished = finish_in_thread(out)
        assert not finished.wait(WATCH), "the pipe gave its values up at once"
        assert out.dropped == 0
        out.give_up()  # the run is stopping
        assert finished.wait(PROMPTLY), "finish() still held after give_up()"
        assert out.dropped == 3
    finally:
        out.close()


def test_a_pipe_of_a_stopping_run_holds_nothing(links: PipeLinks) -> None:
    out = OutPipe(PicklePipe(1), links)
    try:
        out.give_up()
        out.set_route(a_route(links.token))
        out.put((0, 0), "a value")
        assert finish_in_thread(out).wait(PROMPTLY)
        assert out.dropped == 1
    finally:
        out.close()


class ThreeValues(BaseJob):
    """A source of three values, then its end."""

    def serve(self, ctx: JobContext) -> None:
        ctx.produce(iter([1, 2, 3]))


@pytest.mark.parametrize("how", ["stop", "coordinator gone"])
def test_a_finished_job_holding_its_pipe_ends_when_its_run_stops(
    tmp_path: Path, nobody: str, how: str
) -> None:
    """A job host whose job ended while its receiver cannot be reached holds the
    pipe's values; the coordinator saying stop (Ctrl-C) or going away ends the
    hold at once, and the host with it."""
    token, control_token = secrets.token_bytes(TOKEN_BYTES), secrets.token_bytes(TOKEN_BYTES)
    job = ThreeValues(outputs=[PicklePipe(1)])
    job.id = 1
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(PROMPTLY)
        spec = HostSpec(
            job_id=1,
            generation=1,
            coordinator=("127.0.0.1",),
            port=server.getsockname()[1],
            token=token,
            coordinator_token=control_token,
            directory=str(tmp_path / "job"),
            node=LOCAL_NODE,
            forward_output=False,
        )
        host = JobHost(job, spec, Reach(nobody, lambda: "t"))
        outcome: list[str] = []
        ended = threading.Event()

        def run() -> None:
            try:
                outcome.append(host.run())
            finally:
                ended.set()

        threading.Thread(target=run, name="job-host", daemon=True).start()
        # This test is the coordinator, speaking its control protocol.
        conn, _ = server.accept()
        assert read_token(conn, control_token)
        link = ControlLink(conn)
        try:
            assert link.receive()[0] == "hello"
            link.send(("welcome", {1: a_route(token)}, {}, 0, None))
            assert link.receive() == ("ready",)
            link.send(("go",))
            assert not ended.wait(WATCH), "the host gave its pipe up at once"
            if how == "stop":
                link.send(("stop",))
            else:
                link.close()
            assert ended.wait(PROMPTLY), "the host held its pipe after its run stopped"
        finally:
            link.close()
    assert outcome == ["finished after 3 rounds"]
    assert host.runner is not None
    assert sum(out.dropped for out in host.runner.outputs) == 3
