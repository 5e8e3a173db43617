"""The bare chain again, with WebSockets where shoal has them.

:func:`graph_bare.bare_chain` forwards length-prefixed frames over plain TCP.
shoal's client and agents talk to the controller over WebSockets (DESIGN.md:
uvicorn serves them, the agent's client is ``websockets``), so a step also
pays for WebSocket framing, masking and the server's hand-over of each
message to the application. This chain has exactly that and nothing else:

- the client: shoal's :class:`~shoal.client.blocking_websocket.BlockingWebSocket`
  (the client shoal's graph API uses);
- the controller: a bare ASGI application on uvicorn (uvloop, websockets' sans-I/O
  protocol, as shoal's controller runs) that passes each message from the client
  on to the agent's WebSocket and back;
- the agent: a ``websockets`` asyncio client that passes each message to a task
  worker over a socketpair and the answer back;
- the worker: the bare loop of :func:`graph_bare.bare_chain`.

Every message is pickled and unpickled at every hop, as there. It is the floor of
a chain step for any program with shoal's process layout and DESIGN.md's stack.

    python benchmarks/graph_bare_ws.py --chain 5000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import pickle
import socket
from typing import Any

from graph_bare import LENGTH, chain_worker, frame, time_chain

from shoal.client.blocking_websocket import BlockingWebSocket


class _Hub:
    """A bare ASGI application: the agent's WebSocket and the client's, each
    message from one sent on by the other."""

    def __init__(self) -> None:
        self.sends: dict[str, Any] = {}  # "/agent", "/client" -> its ASGI send
        self.agent_ready = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"  # uvicorn runs it with lifespan="off"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        path = scope["path"]
        self.sends[path] = send
        if path == "/agent":
            self.agent_ready.set()
        else:
            await self.agent_ready.wait()
        onward = self.sends  # the other side's send, looked up per message
        other = "/client" if path == "/agent" else "/agent"
        while True:
            event = await receive()
            if event["type"] != "websocket.receive":
                return
            # Read what is forwarded, as a real hop does.
            data = pickle.dumps(pickle.loads(event["bytes"]), pickle.HIGHEST_PROTOCOL)
            await onward[other]({"type": "websocket.send", "bytes": data})


def _controller(sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(
        _Hub(), log_level="warning", ws="websockets-sansio", loop="uvloop", lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])


def _agent(port: int, ready: multiprocessing.connection.Connection) -> None:
    from websockets.asyncio.client import connect

    async def main() -> None:
        ours, theirs = socket.socketpair()
        worker = multiprocessing.get_context("fork").Process(
            target=chain_worker, args=(theirs, ours), daemon=True
        )
        worker.start()
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        async with connect(f"ws://127.0.0.1:{port}/agent", compression=None) as ws:
            ready.send(True)

            async def back() -> None:
                while True:
                    (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
                    message = pickle.loads(await reader.readexactly(size))
                    await ws.send(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

            async with asyncio.TaskGroup() as group:
                task = group.create_task(back())
                async for data in ws:
                    assert isinstance(data, bytes)
                    writer.write(frame(pickle.loads(data)))
                task.cancel()

    asyncio.run(main())


def bare_ws_chain(steps: int) -> tuple[float, float]:
    """(seconds per step, CPU seconds per step over all four processes) of
    ``steps`` dependent steps over WebSockets (see the module's docstring)."""
    ctx = multiprocessing.get_context("fork")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    controller = ctx.Process(target=_controller, args=(listener,), daemon=True)
    controller.start()
    listener.close()
    ready, agent_ready = multiprocessing.Pipe()
    agent = ctx.Process(target=_agent, args=(port, agent_ready))
    agent.start()
    try:
        if not ready.poll(30):
            raise TimeoutError("the bare agent did not connect")
        with BlockingWebSocket(f"ws://127.0.0.1:{port}/client", headers={}) as ws:

            def step(i: int, value: int) -> int:
                ws.send(pickle.dumps((i, value), pickle.HIGHEST_PROTOCOL))
                reply = ws.recv(timeout=10)
                assert isinstance(reply, bytes)
                return int(pickle.loads(reply)[1])

            return time_chain(step, steps)
    finally:
        # Killed: they hold nothing, and uvicorn's graceful shutdown would wait.
        for proc in (agent, controller):
            proc.kill()
            proc.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Shorter runs of this chain moved from one run to the next far more.
    parser.add_argument("--chain", type=int, default=5000, help="steps of the chain")
    args = parser.parse_args()
    seconds, cpu = bare_ws_chain(args.chain)
    print(
        f"bare chain over WebSockets: {seconds * 1000:.3f} ms per step, "
        f"{cpu * 1e6:.0f} us of CPU per step"
    )


if __name__ == "__main__":
    main()
