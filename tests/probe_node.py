"""A fake node for tests that look at what the controller sends a node."""

from __future__ import annotations

import queue
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from shoal.protocol import (
    PROTOCOL_VERSION,
    ControllerMessage,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
)


class ProbeNode:
    """A node that joins with the join token and only listens: it records what
    the controller sends it (the capabilities it grants, the tasks it places)
    and runs nothing."""

    def __init__(self, endpoint: str, token: str, name: str = "probe", cpus: int = 8) -> None:
        self.name = name
        url = endpoint.replace("http://", "ws://") + "/api/agents/ws"
        # Entered by hand: websockets warns about connections used outside a `with`.
        self.ws: ClientConnection = connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}
        ).__enter__()
        self.messages: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._encoder = FrameEncoder()
        self.ws.send(
            self._encoder.encode(
                [Hello(name=name, version=PROTOCOL_VERSION, architecture="linux/amd64", cpus=cpus)]
            )
        )
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._beat, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        decoder: FrameDecoder[ControllerMessage] = FrameDecoder(ControllerMessage)
        try:
            for frame in self.ws:
                if isinstance(frame, bytes):
                    for message in decoder.decode(frame):
                        self.messages.put(message)
        except ConnectionClosed:  # the connection ends with the test
            pass

    def _beat(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self.ws.send(self._encoder.encode([Heartbeat(0.0, 0.0, 0, 0.0)]))
            except ConnectionClosed:
                return

    def send(self, *messages: object) -> None:
        """Send ``messages`` in one frame, as the node would (or a forger)."""
        self.ws.send(self._encoder.encode(list(messages)))

    def next_of(self, kind: type, timeout: float = 30.0) -> object:
        deadline = time.monotonic() + timeout
        while True:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(message, kind):
                return message

    def close(self) -> None:
        self._stop.set()
        self.ws.close()
        for thread in self._threads:
            thread.join(10)
