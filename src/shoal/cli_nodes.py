"""``shoal node`` and ``shoal token``: the nodes' enrollment and the agents' join token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from shoal.cli import _client, _handle_errors, client_command, console


@click.group()
def node() -> None:
    """Manage the nodes' enrollment."""


@node.command("forget")
@click.argument("name")
@client_command
@_handle_errors
def node_forget(name: str, endpoint: str | None, login: str | None, password: str | None) -> None:
    """Free node NAME: its credential stops working and its agent is disconnected;
    the next agent that joins with the join token and this name becomes NAME."""
    _client(endpoint, login, password).forget_node(name)
    console.print(f"node {name} forgotten; an agent with the join token may enroll as {name}")


@click.group()
def token() -> None:
    """Manage the agents' join token (writes to the controller's database)."""


@token.command("rotate")
@click.option("--db", "db_url", default=None, help="Database URL (default: .shoal/shoal.db).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the new token, mode 0600 (default: join-token next to a SQLite "
    "database, else .shoal/join-token).",
)
@click.option("--show", is_flag=True, help="Also print the new token (once).")
def token_rotate(db_url: str | None, token_file: str | None, show: bool) -> None:
    """Make a new join token; the old one stops admitting new nodes at once.

    Enrolled nodes keep working: they show their own credentials, not the join token.
    """
    from shoal.extras import require_controller

    require_controller("shoal token rotate")
    from shoal.controller.enrollment import new_join_token, set_join_token
    from shoal.private import write_private
    from shoal.store.database import Database, default_sqlite_url, default_token_file

    db_url = db_url or default_sqlite_url()
    path = Path(token_file) if token_file else default_token_file(db_url)
    new = new_join_token()

    async def rotate() -> None:
        db = Database(db_url)
        try:
            await db.create_schema()
            async with db.write() as conn:
                await set_join_token(conn, new)
        finally:
            await db.close()

    from sqlalchemy.exc import SQLAlchemyError

    from shoal.store.faults import StoreError

    try:
        asyncio.run(rotate())
    except (StoreError, SQLAlchemyError, OSError) as exc:
        raise click.ClickException(f"cannot store the new join token in {db_url}: {exc}") from None
    try:
        write_private(path, new + "\n")
    except OSError as exc:
        raise click.ClickException(
            f"the new join token is in effect, but cannot be written to {path}: "
            f"{exc.strerror or exc}; rotate again with --token-file elsewhere"
        ) from None
    console.print(f"new join token written to {path}; enrolled nodes are not affected")
    if show:
        click.echo(new)
