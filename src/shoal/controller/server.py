"""Running a controller: bind, serve with uvicorn, announce where it listens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path

import uvicorn

from shoal.controller.app import create_app
from shoal.controller.config import ControllerConfig
from shoal.controller.ws_protocol import TappedWebSocketProtocol
from shoal.gc_settings import tune_for_service
from shoal.store.database import Database

log = logging.getLogger("shoal.controller")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    # that do, and without it every small response waits for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def endpoint_of(config: ControllerConfig, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    scheme = "https" if config.tls_cert else "http"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


async def serve(
    config: ControllerConfig, announce: Callable[[str, str], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; ``announce(endpoint, token_file)`` once ready
    (``token_file``: where the join token is, "" if the controller wrote none)."""
    # A store that is away at start is an error naming why, not a traceback
    # from the web server's startup.
    probe = Database(config.db_url)
    try:
        await probe.create_schema()
    finally:
        await probe.close()
    sock = bind(config.host, config.port)
    endpoint = endpoint_of(config, sock)

    def ready(_svc: object) -> None:
        log.info("shoal controller listening on %s", endpoint)
        if announce is not None:
            token_file = config.token_file or ""
            announce(endpoint, token_file if token_file and Path(token_file).is_file() else "")

    app = create_app(config, on_ready=ready)
    uv_config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        # uvicorn's sans-I/O websockets protocol: relayed channels run 1.5-2x
        # faster on it than on the legacy one (fewer copies, no 64 KiB read limit);
        # tapped, so that agents' heartbeats are taken where they are parsed.
        ws=TappedWebSocketProtocol,
        ws_max_size=256 * 1024 * 1024,
        ws_ping_interval=None,  # agents send their own heartbeats
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(uv_config)
    await server.serve(sockets=[sock])


def run(main: Coroutine[object, object, None]) -> None:
    """Run the controller's ``main`` (``serve(...)``) on uvloop where it is installed
    (uvicorn's standard extra brings it), else on asyncio's own loop.

    A thousand agents' heartbeats are a thousand small reads a second: asyncio's
    Python transports cost about twice uvloop's per frame (pausing and resuming
    reading on every WebSocket message is a system call each in Python).
    """
    tune_for_service()
    raise_open_file_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def raise_open_file_limit(most: int = 1 << 20) -> None:
    """Raise this process's soft limit of open files to its hard limit (at most
    ``most``), as servers do.

    A controller holds a connection per agent and per client, two per relayed
    channel and four more while the channel moves large frames in the kernel:
    the common soft limit of 1,024 is a few hundred nodes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = most if hard == resource.RLIM_INFINITY else min(hard, most)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # a limit is not a reason to stop
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
