"""The ``shoal`` command."""

from __future__ import annotations

import importlib
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

console = Console()


class _Commands(click.Group):
    """Front-end command groups and the client and user commands are imported when
    used, so that `shoal agent` (on every node) and `shoal controller` start without them."""

    lazy = {
        "dataflow": "shoal.dataflow.cli",
        "node": "shoal.cli_nodes",
        "token": "shoal.cli_nodes",
        "user": "shoal.cli_users",
        "up": "shoal.cli_up",
        **dict.fromkeys(("controller", "agent"), "shoal.cli_servers"),
        **dict.fromkeys(("deploy", "undeploy", "logs"), "shoal.cli_deploy"),
        **dict.fromkeys(("nodes", "experiments", "status", "cancel", "flags"), "shoal.cli_queries"),
        **dict.fromkeys(("show", "export"), "shoal.cli_records"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = self.lazy.get(name)
        if module is not None:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        from shoal.extras import MissingExtra

        try:
            return super().invoke(ctx)
        except MissingExtra as exc:
            # A node's light install runs a controller command: say what to install.
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shoal")
def main() -> None:
    """shoal: run distributed experiments and task graphs across a fleet of nodes.

    Start a local shoal with `shoal up`, then run an example or inspect it with
    `shoal nodes` and `shoal experiments`.
    """


# ----------------------------------------------------------------- operators

_client_options = [
    click.option("--endpoint", envvar="SHOAL_ENDPOINT", default=None, help="Controller URL."),
    click.option("--login", envvar="SHOAL_LOGIN", default=None),
    click.option("--password", envvar="SHOAL_PASSWORD", default=None),
]


def client_command(fn: Any) -> Any:
    for option in reversed(_client_options):
        fn = option(fn)
    return fn


def _client(endpoint: str | None, login: str | None, password: str | None) -> Any:
    from shoal.client.remote import RemoteClient

    try:
        return RemoteClient(endpoint, login, password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _handle_errors(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from shoal.client.remote import RemoteClientException

        try:
            return fn(*args, **kwargs)
        except RemoteClientException as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-v", "--verbose", count=True, help="-v WARN, -vv INFO, -vvv DEBUG.")
@click.option("--resume", is_flag=True, help="Skip experiments that finished in an earlier run.")
@click.option("--no-progress", is_flag=True, help="No progress bar; plain log lines.")
@click.option(
    "--log",
    "log_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append all output to this file.",
)
@click.option("--notify", metavar="URL", help="POST a JSON summary here when the run ends.")
def exp(
    paths: tuple[Path, ...],
    verbose: int,
    resume: bool,
    no_progress: bool,
    log_file: Path | None,
    notify: str | None,
) -> None:
    """Run the @reg_exp experiments in PATHS (files, or folders searched recursively).

    Without SHOAL_ENDPOINT a local cluster is started with one node per server id;
    with it, server ids name the controller's nodes.
    """
    from shoal.runner.discovery import ExperimentDefinitionError
    from shoal.runner.execution import RunOptions, run

    options = RunOptions(
        list(paths),
        resume=resume,
        progress=not no_progress,
        log_file=log_file,
        notify=notify,
        verbosity=verbose,
    )

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM ends a run as Ctrl-C does: its commands killed, the run recorded cancelled.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        code = run(options)
    except ExperimentDefinitionError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("shoal exp: interrupted", err=True)
        sys.exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
