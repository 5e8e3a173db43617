"""The client-side dataflow coordinator believes its job hosts only so far.

Hosts run on nodes, among other people's code: they reach the coordinator only
with its own token (not the one every host of the run holds for pipes), and
what they send it is read as plain values, never unpickled into objects, so a
node cannot get code run in the client. Pipes never reach the coordinator:
they are channels between the hosts (test_dataflow_channels.py); the
via-controller control path end to end is in test_dataflow_failover.py.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from shoal.dataflow import load_network
from shoal.dataflow.control_link import loads_plain, pack
from shoal.dataflow.coordinator import Coordinator
from shoal.protocol.framing import frame

NETWORK = """
from shoal.dataflow import BaseNode, PicklePipe, PythonJob


class Count(PythonJob):
    def run(self):
        yield 1


class Sink(PythonJob):
    def run(self, n):
        pass


JOBS = [Count(outputs=[PicklePipe(1)]), Sink(inputs=[PicklePipe(1)])]
NODES = [BaseNode("node-0")]
"""


class Touch:
    """Unpickling this creates a file: what a hostile node would send."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mknod, (str(self.path),))


def test_plain_frames_hold_values_but_never_objects(tmp_path: Path) -> None:
    hello = ("hello", 3, 1, 4242, ["10.0.0.1"], "node-0", 77, {"a": b"x"}, 1.5, None)
    assert loads_plain(pickle.dumps(hello)) == hello
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match=r"may not hold posix\.mknod"):
        loads_plain(pickle.dumps(("print", Touch(marker))))
    assert not marker.exists()


@pytest.fixture
def coordinator(tmp_path: Path) -> Any:
    config = tmp_path / "net"
    config.mkdir()
    (config / "config.py").write_text(NETWORK)
    # The client is not called by what is tested here: no job is placed.
    coord = Coordinator(load_network(config), None, tmp_path / "out", loopback=True)  # type: ignore[arg-type]
    yield coord
    coord.control.close()


def serve(coord: Coordinator, first: bytes) -> tuple[bytes, threading.Thread]:
    """Feed ``first`` to the coordinator as a host would; what it answered."""
    ours, theirs = socket.socketpair()
    served = threading.Thread(target=coord.control.serve_host, args=(theirs,), daemon=True)
    served.start()
    ours.sendall(first)
    ours.shutdown(socket.SHUT_WR)
    ours.settimeout(10)
    answer = b""
    try:
        while chunk := ours.recv(1 << 16):
            answer += chunk
    except ConnectionResetError:
        pass  # closed on us with our frame unread: refused
    ours.close()
    served.join(10)
    return answer, served


def test_the_hosts_pipe_token_does_not_open_the_coordinator(coordinator: Coordinator) -> None:
    assert coordinator.token != coordinator.control_token
    hello = ("hello", 0, 0, "node-0", 1)
    answer, served = serve(coordinator, coordinator.token + frame(pack(hello)))
    assert answer == b"" and not served.is_alive()
    # with its own token, a host of no current job is told to stop
    answer, _ = serve(coordinator, coordinator.control_token + frame(pack(hello)))
    assert pickle.loads(answer[4:]) == ("stop",)


def test_a_forged_object_is_refused_without_running(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    forged = frame(pack(("hello", Touch(marker))))
    answer, served = serve(coordinator, coordinator.control_token + forged)
    assert answer == b"" and not served.is_alive()
    assert not marker.exists()
