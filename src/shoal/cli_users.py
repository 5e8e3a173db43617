"""``shoal user``: the controller's users, written straight to its database."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from typing import Any

import click
from rich.table import Table

from shoal.cli import console


@click.group()
def user() -> None:
    """Manage users (writes to the controller's database; a running controller
    notices within a second)."""
    from shoal.extras import require_controller

    require_controller("shoal user")


def _user_db(db_url: str | None, action: Any) -> Any:
    """Run ``action(conn)`` in one transaction on the controller's database."""
    from shoal.store.database import Database, default_sqlite_url
    from shoal.store.faults import StoreError

    async def run() -> Any:
        db = Database(db_url or default_sqlite_url())
        try:
            await db.create_schema()
            async with db.write() as conn:
                return await action(conn)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _refuse_password_option(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
    if value is not None:
        raise click.UsageError(
            "--password would put the password on the command line, where `ps` shows it"
            " to everyone; leave it out to be asked for it, or pipe it in with"
            " --password-stdin",
            ctx,
        )


@user.command("add")
@click.argument("name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)
@click.option(
    "--password",
    hidden=True,
    expose_value=False,
    callback=_refuse_password_option,
    help="Refused: a password on the command line is visible to every user.",
)
@click.option("--db", "db_url", default=None, help="Database URL (default: .shoal/shoal.db).")
def user_add(name: str, password_stdin: bool, db_url: str | None) -> None:
    """Create user NAME, or set a new password (which logs the user out everywhere).

    The password is asked for (hidden, twice), or read with --password-stdin:

        printf '%s\\n' "$PW" | shoal user add alice --password-stdin
    """
    from shoal.controller.auth import hash_password
    from shoal.store import users as user_queries

    if not name or len(name) > 128 or any(ord(ch) < 32 for ch in name):
        raise click.BadParameter("1 to 128 characters, no control characters", param_hint="NAME")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            f"password for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
    if not password:
        raise click.BadParameter("the password may not be empty", param_hint="password")
    hashed = hash_password(password)

    async def add(conn: Any) -> bool:
        existed = await user_queries.get_user(conn, name) is not None
        await user_queries.put_user(conn, name, hashed)
        return existed

    existed = _user_db(db_url, add)
    console.print(
        f"user {name} "
        + ("has a new password; its old tokens are revoked" if existed else "created")
    )


@user.command("list")
@click.option("--db", "db_url", default=None, help="Database URL (default: .shoal/shoal.db).")
def user_list(db_url: str | None) -> None:
    """The users, with how many live tokens each holds."""
    from shoal.store import users as user_queries

    rows = _user_db(db_url, user_queries.describe_users)
    table = Table("user", "created", "logins", "executor tokens")
    for row in rows:
        created = dt.datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M")
        table.add_row(row["login"], created, str(row["user_tokens"]), str(row["executor_tokens"]))
    console.print(table if rows else "no users")


@user.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--db", "db_url", default=None, help="Database URL (default: .shoal/shoal.db).")
def user_remove(name: str, yes: bool, db_url: str | None) -> None:
    """Remove user NAME with their experiments and results; their tokens stop working."""
    from shoal.store import users as user_queries

    async def look(conn: Any) -> tuple[dict | None, list[str], int]:
        found = await user_queries.get_user(conn, name)
        if found is None:
            return None, [], 0
        busy = await user_queries.unfinished_experiments(conn, name)
        return found, busy, await user_queries.count_experiments(conn, found["id"])

    found, busy, count = _user_db(db_url, look)
    if found is None:
        raise click.ClickException(f"no user {name!r}")
    if busy:
        raise click.ClickException(
            f"user {name} has unfinished experiments ({', '.join(busy)});"
            " cancel them first (shoal cancel NAME, logged in as them)"
        )
    if not yes:
        click.confirm(
            f"remove user {name} and their {count} experiment(s) with all results?",
            abort=True,
            err=True,
        )
    if not _user_db(db_url, lambda conn: user_queries.delete_user(conn, name)):
        raise click.ClickException(f"no user {name!r}")
    console.print(f"user {name} removed; their tokens no longer work")
