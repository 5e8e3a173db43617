"""``shoal controller`` and ``shoal agent``: the two long-running processes.

Kept apart from the client commands, so that an agent on a node imports only
what it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click


def _setup_logging(verbose: int) -> None:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


class _Duration(click.ParamType):
    """Seconds, or a number with s, m, h or d."""

    name = "duration"
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        scale = self.units.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if scale else text) * (scale or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration like 3600, 90m, 24h or 7d", param, ctx)
        if not 1 <= seconds <= 10 * 365 * 86400:
            self.fail(f"{value!r} must be between 1 s and 10 years", param, ctx)
        return seconds


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8642, show_default=True)
@click.option(
    "--db",
    "db_url",
    default=None,
    help="sqlite+aiosqlite:///path or postgresql+asyncpg://user:pw@host/db "
    "(default: .shoal/shoal.db)",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option(
    "--agent-token",
    envvar="SHOAL_AGENT_TOKEN",
    default=None,
    help="Set the join token new agents must present (default: keep the one stored, "
    "hashed, in the database; on first start one is made up and written to --token-file).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the join token (mode 0600) when it is made up or given with "
    "--agent-token (default for a made-up one: join-token next to a SQLite database, "
    "else .shoal/join-token).",
)
@click.option(
    "--heartbeat-interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True
)
@click.option(
    "--heartbeat-timeout",
    type=click.FloatRange(0.1, 600),
    default=5.0,
    show_default=True,
    help="Seconds of silence before a node is suspect (its work is kept).",
)
@click.option(
    "--lost-timeout",
    type=click.FloatRange(0.1, 86400),
    default=60.0,
    show_default=True,
    help="Seconds of silence (or of absence after a restart) before a node's running "
    "work is declared lost; at least --heartbeat-timeout.",
)
@click.option(
    "--graph-capability-ttl",
    type=click.FloatRange(0.1, 3600),
    default=60.0,
    envvar="SHOAL_GRAPH_CAPABILITY_TTL",
    show_default=True,
    help="Seconds a node has to start fetching a graph object it was granted.",
)
@click.option(
    "--token-ttl",
    type=_Duration(),
    default="7d",
    show_default=True,
    help="How long a login's bearer token stays valid (e.g. 3600, 90m, 24h, 7d).",
)
@click.option(
    "--metrics-public",
    is_flag=True,
    help="Serve /metrics (Prometheus) without a login; otherwise it needs a user's "
    "bearer token like the API.",
)
@click.option("--ready-fd", type=int, default=None, hidden=True)
@click.option("-v", "--verbose", count=True)
def controller(
    host: str,
    port: int,
    db_url: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    agent_token: str | None,
    token_file: str | None,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    graph_capability_ttl: float,
    lost_timeout: float,
    token_ttl: float,
    metrics_public: bool,
    ready_fd: int | None,
    verbose: int,
) -> None:
    """Run a controller (production: --db postgresql+asyncpg://...)."""
    from shoal.extras import require_controller

    require_controller("shoal controller")
    from shoal.controller.config import ControllerConfig
    from shoal.controller.server import run, serve
    from shoal.store.database import default_sqlite_url, default_token_file

    _setup_logging(verbose)
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if lost_timeout < heartbeat_timeout:
        raise click.BadParameter(
            f"{lost_timeout:g} s is shorter than --heartbeat-timeout ({heartbeat_timeout:g} s)",
            param_hint="--lost-timeout",
        )
    users = tuple(
        (str(u[0]), str(u[1])) for u in json.loads(os.environ.pop("SHOAL_BOOTSTRAP_USERS", "[]"))
    )
    db_url = db_url or default_sqlite_url()
    if token_file is None and not agent_token:
        token_file = str(default_token_file(db_url))
    config = ControllerConfig(
        db_url=db_url,
        host=host,
        port=port,
        agent_token=agent_token,
        token_file=token_file,
        bootstrap_users=users,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        lost_timeout=lost_timeout,
        token_ttl=token_ttl,
        tls_cert=tls_cert,
        tls_key=tls_key,
        graph_capability_ttl=graph_capability_ttl,
        metrics_public=metrics_public,
    )

    def announce(endpoint: str, written: str) -> None:
        if written:
            how = f"--token-file {written}  (copy that file to each node, mode 0600)"
        elif agent_token:
            how = "--token-file FILE  (FILE, mode 0600, holds the join token you gave)"
        else:
            how = (
                "--token-file FILE  (the join token is stored hashed; "
                "`shoal token rotate` makes a new one)"
            )
        click.echo(
            f"shoal controller on {endpoint}; agents join with: "
            f"shoal agent --controller {endpoint} {how}",
            err=True,
        )
        if ready_fd is not None:
            with os.fdopen(ready_fd, "w") as ready:
                ready.write(json.dumps({"endpoint": endpoint, "token_file": written}) + "\n")

    from shoal.store.faults import StoreError

    try:
        run(serve(config, announce))
    except StoreError as exc:
        raise click.ClickException(f"cannot start the controller: {exc}") from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            " (another shoal controller there? choose another --port)"
        ) from None


@click.command()
@click.option(
    "--controller",
    "controller_url",
    envvar="SHOAL_CONTROLLER",
    required=True,
    help="http(s)://host:port of the controller.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A file (mode 0600) holding the controller's join token; or set SHOAL_AGENT_TOKEN. "
    "Needed until the node has enrolled: then it shows its own credential, kept in --workdir.",
)
@click.option("--token", "token_argument", default=None, hidden=True, expose_value=True)
@click.option("--name", default=None, help="Node name (default: the host name).")
@click.option(
    "--property",
    "properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="A node property, repeatable.",
)
@click.option("--cpus", type=click.IntRange(1, 4096), default=None)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the agent keeps its node credential and graph objects (default: the "
    "credential in ~/.local/state/shoal/agents/NAME, objects in a temporary folder).",
)
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Also give tasks this variable of the agent's environment (repeatable). By "
    "default they get only PATH, HOME, locale and the like, never the agent's secrets.",
)
@click.option(
    "--data-server/--no-data-server",
    default=True,
    envvar="SHOAL_DATA_SERVER",
    show_default=True,
    help="Serve channels (graph objects too) to other agents directly. Turn it off on "
    "nodes that peers cannot reach; their channels then go through the controller.",
)
@click.option(
    "--data-address",
    envvar="SHOAL_DATA_ADDRESS",
    default="",
    metavar="HOST",
    help="Where the channel server listens (default: the address this agent reaches the "
    "controller from; loopback on a local cluster).",
)
@click.option(
    "--isolate-users",
    is_flag=True,
    envvar="SHOAL_ISOLATE_USERS",
    help="Run each user's graph tasks under an OS user of their own (shoal-<login>, "
    "created when needed), with private object and work folders. Needs root. "
    "Without it, all users' graph tasks share this agent's OS user and can read "
    "each other's objects.",
)
@click.option("-v", "--verbose", count=True)
def agent(
    controller_url: str,
    token_file: str | None,
    token_argument: str | None,
    name: str | None,
    properties: tuple[str, ...],
    cpus: int | None,
    workdir: str | None,
    pass_env: tuple[str, ...],
    data_server: bool,
    data_address: str,
    isolate_users: bool,
    verbose: int,
) -> None:
    """Run a node agent that connects out to a controller.

    Graph tasks of all users run as the agent's own OS user (and can read each
    other's objects) unless --isolate-users is given.
    """
    from shoal.agent import child_env
    from shoal.agent.agent import Agent, AgentRefused
    from shoal.agent.config import AgentConfig

    _setup_logging(verbose)
    if token_argument is not None:
        raise click.UsageError(
            "--token is gone: a token on the command line is visible to every user of "
            "this machine (ps, /proc). Put it in a file only you can read (chmod 600) and "
            "give --token-file FILE, or set SHOAL_AGENT_TOKEN."
        )
    join_token = read_join_token(token_file)
    child_env.pass_on(pass_env)
    props: dict[str, str] = {}
    for item in properties:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--property")
        props[key] = value
    from shoal.agent.config import host_properties

    # Reported by every agent, so `Server(id, ip)` can find a node by its address;
    # what the operator sets wins.
    props = {**host_properties(), **props}
    config = AgentConfig(controller=controller_url, join_token=join_token, properties=props)
    if name:
        config.name = name
    if cpus:
        config.cpus = cpus
    if workdir:
        config.workdir = str(Path(workdir).resolve())
        # Made here with the ordinary mode: the node credential written into it
        # later would otherwise create it private (0700), and users' accounts
        # under --isolate-users must pass through it to their folders.
        Path(config.workdir).mkdir(parents=True, exist_ok=True)
    config.data_server = data_server
    config.data_address = data_address
    if isolate_users:
        from shoal.agent.isolation import setup_problem

        problem = setup_problem(Path(config.workdir) / "graph" if config.workdir else None)
        if problem:
            raise click.UsageError(problem)
        config.isolate_users = True

    async def run() -> None:
        from shoal import taskdump
        from shoal.gc_settings import tune_for_service

        taskdump.install()
        _fast_child_watcher()
        tune_for_service()
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await Agent(config).run()

    try:
        asyncio.run(run())
    except* AgentRefused as group:
        click.echo(f"error: {group.exceptions[0]}", err=True)
        sys.exit(2)


def read_join_token(token_file: str | None) -> str | None:
    """The join token from --token-file, else from SHOAL_AGENT_TOKEN (taken out of
    the environment, so nothing this process starts can inherit it)."""
    from shoal.private import read_private

    from_env = os.environ.pop("SHOAL_AGENT_TOKEN", None)
    if token_file is None:
        return from_env or None
    try:
        return read_private(token_file)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token-file") from None


def _fast_child_watcher() -> None:
    """On Python 3.11, wait for children with pidfds instead of a thread per process.

    (3.12 does this by itself; the thread costs a command's round trip ~0.3 ms.)
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    import warnings

    with warnings.catch_warnings(), contextlib.suppress(OSError, NotImplementedError):
        warnings.simplefilter("ignore", DeprecationWarning)
        os.close(os.pidfd_open(os.getpid()))  # the kernel supports pidfds
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
