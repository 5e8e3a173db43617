"""The graph client's WebSocket connection against a real websockets server.

The server runs in a thread of the test (its own event loop); what it does is
what a controller may do: answer, fragment a message, ping, close, refuse."""

from __future__ import annotations

import asyncio
import contextlib
import socket
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


@contextlib.contextmanager
def connect_proxy() -> Iterator[tuple[str, list[str]]]:
    """An HTTP CONNECT proxy on loopback: its URL, and the targets it was asked for."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    asked: list[str] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = [listener]

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(4096)
                if not chunk:
                    break
                request += chunk
            if b"\r\n\r\n" not in request:
                client.close()
                continue
            target = request.split(b" ")[1].decode()
            asked.append(target)
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=5)
            upstream.settimeout(None)
            sockets.extend((client, upstream))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=pump, args=(source, sink), daemon=True)
                thread.start()
                threads.append(thread)

    server_thread = threading.Thread(target=serve, daemon=True)
    server_thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", asked
    finally:
        stop.set()
        server_thread.join(5)
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(5)


@pytest.mark.timeout(30)
def test_the_proxy_the_environment_names_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with server(echo) as url, connect_proxy() as (proxy, asked):
        monkeypatch.setenv("http_proxy", proxy)
        with connect(url) as ws:
            ws.send(b"through the proxy")
            assert ws.recv(timeout=5) == b"through the proxy"
        assert asked == [url.removeprefix("ws://")]
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        with connect(url) as ws:  # named in no_proxy: straight to the server
            ws.send(b"direct")
            assert ws.recv(timeout=5) == b"direct"
        assert len(asked) == 1
