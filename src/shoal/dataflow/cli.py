"""``shoal dataflow CONFIG simulate|run|show|graphviz|test``: FISSION's manage.py, on shoal."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click

from shoal.dataflow.errors import DataflowError
from shoal.dataflow.network import Network, describe, load_network

log = logging.getLogger("shoal.dataflow")


@click.group("dataflow", invoke_without_command=False)
@click.argument("config", type=click.Path(exists=True))
@click.pass_context
def dataflow(ctx: click.Context, config: str) -> None:
    """Run the dataflow network CONFIG (a network folder with config.py, or the file)."""
    try:
        ctx.obj = load_network(config)
    except DataflowError as exc:
        raise click.ClickException(str(exc)) from None


def _rounds_option(fn: object) -> object:
    return click.option(
        "--rounds",
        type=click.IntRange(1),
        envvar="SHOAL_DATAFLOW_ROUNDS",
        default=None,
        help="Stop every source after N values (the network then ends by itself).",
    )(fn)


@dataflow.command()
@_rounds_option
@click.option("--heartbeat-timeout", type=float, default=3.0, show_default=True)
@click.pass_obj
def simulate(network: Network, rounds: int | None, heartbeat_timeout: float) -> None:
    """A local cluster with one agent per node in NODES; outputs under simulation/."""
    from shoal.dataflow.simulation import cluster_for

    output = network.directory / "simulation"
    shutil.rmtree(output, ignore_errors=True)  # the tutorial's promise: cleared first
    output.mkdir(parents=True)
    _logging(network, output)
    cluster = cluster_for(network, heartbeat_timeout)
    try:
        cluster.start()  # type: ignore[attr-defined]
        _run(network, cluster.client(), output, rounds, loopback=True)  # type: ignore[attr-defined]
    finally:
        cluster.stop()  # type: ignore[attr-defined]


@dataflow.command()
@_rounds_option
@click.option(
    "--via-controller",
    is_flag=True,
    help="The nodes cannot reach this machine (NAT): the jobs talk to it through the controller.",
)
@click.option("--endpoint", envvar="SHOAL_ENDPOINT", default=None, help="Controller URL.")
@click.option("--login", envvar="SHOAL_LOGIN", default=None)
@click.option("--password", envvar="SHOAL_PASSWORD", default=None)
@click.pass_obj
def run(
    network: Network,
    rounds: int | None,
    via_controller: bool,
    endpoint: str | None,
    login: str | None,
    password: str | None,
) -> None:
    """Run on the controller's nodes (SHOAL_ENDPOINT); outputs under local/."""
    from shoal.client.remote import RemoteClient

    output = network.directory / "local"
    output.mkdir(exist_ok=True)
    _logging(network, output)
    try:
        client = RemoteClient(endpoint, login, password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with client:
        _run(network, client, output, rounds, loopback=False, direct=not via_controller)


@dataflow.command()
@click.pass_obj
def show(network: Network) -> None:
    """Print the jobs and pipes, and where each job runs now (if it runs)."""
    placements: dict[int, str] = {}
    restarts: dict[int, list[str]] = {}
    state = _latest_state(network)
    if state is not None:
        path, data = state
        for key, job in data["jobs"].items():
            placements[int(key)] = f"{job['node']} ({job['status']})"
            restarts[int(key)] = job["restarts"]
        click.echo(f"state from {path}")
    text = describe(network, placements)
    click.echo(text)
    for job_id, entries in sorted(restarts.items()):
        for entry in entries:
            click.echo(f"  job {network.job(job_id).name} restarted: {entry}")


@dataflow.command()
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the DOT file goes (default: NET/network.dot).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["pdf", "svg", "png", "dot"]),
    default="pdf",
    show_default=True,
    help="What Graphviz renders the DOT file to, beside it (dot: the DOT file alone).",
)
@click.pass_obj
def graphviz(network: Network, output: Path | None, output_format: str) -> None:
    """Draw the jobs and pipes as a Graphviz graph; once the network ran, its
    jobs are grouped by the node they run on."""
    from shoal.dataflow.network_dot import network_dot, render

    state = _latest_state(network)
    placements = {}
    if state is not None:
        placements = {int(key): job["node"] for key, job in state[1]["jobs"].items()}
    dot_file = output or network.directory / "network.dot"
    dot_file.write_text(network_dot(network, placements))
    click.echo(f"wrote {dot_file}")
    if output_format == "dot":
        return
    try:
        rendered = render(dot_file, output_format)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise click.ClickException(str(exc)) from None
    if rendered is None:
        raise click.ClickException(
            f"Graphviz's dot is not installed, so {dot_file} was not rendered to "
            f"{output_format} (apt-get install graphviz; or --format dot)"
        )
    click.echo(f"wrote {rendered}")


def _latest_state(network: Network) -> tuple[Path, dict[str, Any]] | None:
    """The state the network's newest run keeps (simulated or on a testbed)."""
    states = [network.directory / d / "state.json" for d in ("simulation", "local")]
    existing = [p for p in states if p.exists()]
    if not existing:
        return None
    latest = max(existing, key=lambda p: p.stat().st_mtime)
    return latest, json.loads(latest.read_text())


@dataflow.command(context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def test(network: Network, pytest_args: tuple[str, ...]) -> None:
    """Run the network's tests (NET/tests) with pytest and FISSION's fixtures.

    Extra arguments go to pytest (e.g. -k NAME, --runslow)."""
    try:
        import pytest
    except ImportError:
        raise click.ClickException("`shoal dataflow NET test` needs pytest installed") from None
    from shoal.dataflow import test as plugin

    folder = network.directory / "tests"
    if not folder.is_dir():
        raise click.ClickException(f"no tests folder: {folder}")
    plugin.use_config(network.module)
    try:
        code = pytest.main([str(folder), *pytest_args], plugins=["shoal.dataflow.test"])
    finally:
        plugin.use_config(None)
    raise SystemExit(int(code))


def _run(
    network: Network,
    client: object,
    output: Path,
    rounds: int | None,
    loopback: bool,
    direct: bool = True,
) -> None:
    from shoal.client.remote import RemoteClientException
    from shoal.dataflow.coordinator import Coordinator

    coordinator = Coordinator(
        network,
        client,  # type: ignore[arg-type]
        output,
        max_rounds=rounds,
        loopback=loopback,
        direct=direct,
    )
    try:
        coordinator.start()
        click.echo(describe(network, coordinator.placements()), err=True)
        coordinator.wait()
        if coordinator.error is not None:
            raise DataflowError(f"the network failed: {coordinator.error}")
        click.echo(f"network finished: {coordinator.summary()}", err=True)
    except KeyboardInterrupt:
        click.echo("stopping (Ctrl-C)", err=True)
    except (DataflowError, RemoteClientException) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        coordinator.stop()


def _logging(network: Network, output: Path) -> None:
    logger = logging.getLogger("shoal.dataflow")
    logger.setLevel(network.log_level)
    target = output / Path(network.log_file or "dataflow.log").name
    handler = logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(console)
    os.environ.setdefault("SHOAL_DATAFLOW_NETWORK", network.name)
