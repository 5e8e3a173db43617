"""The graph client's WebSocket connection against a real websockets server.

The server runs in a thread of the test (its own event loop); what it does is
what a controller may do: answer, fragment a message, ping, close, refuse."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response

from shoal.client.blocking_websocket import BlockingWebSocket

Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.contextmanager
def server(handler: Handler, refuse: bool = False) -> Iterator[str]:
    """A websockets server on loopback running ``handler``; its ws:// URL."""
    url: list[str] = []
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop = loop.create_future()

    def check(connection: ServerConnection, request: Request) -> Response | None:
        if refuse or request.headers.get("Authorization") != "Bearer right":
            return connection.respond(403, "no\n")
        return None

    async def main() -> None:
        async with serve(
            handler, "127.0.0.1", 0, process_request=check, max_size=None, close_timeout=0.5
        ) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            url.append(f"ws://127.0.0.1:{port}")
            started.set()
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert started.wait(10), "the test server did not start"
        yield url[0]
    finally:
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
        thread.join(10)
        loop.close()


def connect(url: str) -> BlockingWebSocket:
    return BlockingWebSocket(url, headers={"Authorization": "Bearer right"}, open_timeout=5)


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.timeout(30)
def test_messages_go_both_ways_in_order() -> None:
    with server(echo) as url, connect(url) as ws:
        for i in range(100):
            ws.send(b"%d" % i)
        assert [ws.recv(timeout=5) for _ in range(100)] == [b"%d" % i for i in range(100)]
        big = bytes(range(256)) * 20_000  # 5 MB: more than one read
        ws.send(big)
        assert ws.recv(timeout=5) == big


@pytest.mark.timeout(30)
def test_a_read_with_nothing_there_times_out_and_the_connection_goes_on() -> None:
    with server(echo) as url, connect(url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        ws.send(b"still here")
        assert ws.recv(timeout=5) == b"still here"


@pytest.mark.timeout(30)
def test_a_fragmented_message_arrives_whole() -> None:
    async def fragments(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send([b"one ", b"two ", b"three"])
        await ws.send(["text ", "too"])
        await ws.wait_closed()

    with server(fragments) as url, connect(url) as ws:
        ws.send(b"go")
        assert ws.recv(timeout=5) == b"one two three"
        assert ws.recv(timeout=5) == "text too"


@pytest.mark.timeout(30)
def test_a_ping_from_the_server_is_answered_at_the_next_read() -> None:
    answered: list[bool] = []

    async def pinger(ws: ServerConnection) -> None:
        await ws.recv()
        pong = await ws.ping()
        await ws.send(b"pinged")
        await asyncio.wait_for(pong, 5)
        answered.append(True)
        await ws.send(b"pong came")
        await ws.wait_closed()

    with server(pinger) as url, connect(url) as ws:
        ws.send(b"go")
        assert ws.recv(timeout=5) == b"pinged"
        assert ws.recv(timeout=5) == b"pong came"
        assert answered == [True]


@pytest.mark.timeout(30)
def test_a_server_that_closes_ends_the_connection_with_its_reason() -> None:
    async def goodbye(ws: ServerConnection) -> None:
        await ws.send(b"last words")
        await ws.close(4000, "done with you")

    with server(goodbye) as url, connect(url) as ws:
        assert ws.recv(timeout=5) == b"last words"
        with pytest.raises(ConnectionClosed, match="done with you"):
            ws.recv(timeout=5)
        with pytest.raises(ConnectionClosed):
            ws.send(b"too late")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


@pytest.mark.timeout(30)
def test_a_refused_upgrade_raises_its_status() -> None:
    with server(echo) as url, pytest.raises(InvalidStatus, match="403"):
        BlockingWebSocket(url, headers={"Authorization": "Bearer wrong"}, open_timeout=5)


@pytest.mark.timeout(30)
def test_closing_twice_and_after_the_server_went_is_quiet() -> None:
    with server(echo) as url:
        ws = connect(url)
    ws.close()  # the server's loop is gone: no answer to the close comes
    ws.close()
