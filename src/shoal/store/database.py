"""The database handle: engine, schema creation and transactions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shoal.private import private_dir, private_file
from shoal.store.faults import classify
from shoal.store.tables import metadata

# How long to wait for a PostgreSQL server to answer a connect: a host that has
# gone silent must not hold a request for asyncpg's default of a minute.
CONNECT_TIMEOUT = 10


def default_sqlite_url(directory: str | Path = ".shoal") -> str:
    """The embedded default: a SQLite file in ``directory``."""
    path = Path(directory).resolve() / "shoal.db"
    return f"sqlite+aiosqlite:///{path}"


def default_token_file(db_url: str) -> Path:
    """Where a controller keeps the agents' join token: next to a SQLite
    database, else in ``.shoal/``."""
    parsed = make_url(db_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).resolve().parent / "join-token"
    return Path(".shoal").resolve() / "join-token"


class Database:
    """One engine for the controller's lifetime.

    SQLite allows one writer at a time; writes are serialised in-process with a
    lock rather than left to fail with "database is locked".

    A database that is down or a disk that is full surfaces from ``read`` and
    ``write`` as ``StoreError`` (see ``shoal.store.faults``); pooled PostgreSQL
    connections are checked before use, so the first call after an outage
    reconnects by itself.
    """

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._sqlite_path: str | None = None
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            # Password hashes and token hashes live here: owner only. SQLite gives
            # its -wal and -shm files the mode of the database file.
            private_dir(Path(parsed.database).parent)
            private_file(parsed.database)
            self._sqlite_path = str(Path(parsed.database).resolve())
        kwargs: dict = {}
        if not self.is_sqlite:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
            if parsed.get_driver_name() == "asyncpg":
                kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # Called with the seconds each committed write took (the controller's metrics).
        self.on_write: Callable[[float], None] | None = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def create_schema(self) -> None:
        """Create missing tables, columns and indexes; ``StoreError`` if the store is away."""
        async with self.write() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(_add_missing)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success; durable when the block exits.

        Raises ``StoreError`` if the store is away or full (nothing was committed).
        """
        start = time.perf_counter()
        try:
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
            else:
                async with self._write_lock, self.engine.begin() as conn:
                    yield conn
        except Exception as exc:
            self._raise_fault(exc)
            raise
        if self.on_write is not None:
            self.on_write(time.perf_counter() - start)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading; ``StoreError`` if the store is away."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except Exception as exc:
            self._raise_fault(exc)
            raise

    def _raise_fault(self, exc: Exception) -> None:
        fault = classify(exc, self._sqlite_path)
        if fault is not None and fault is not exc:
            raise fault from exc

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets readers go on while the controller writes; NORMAL sync is still
    # crash-safe for the database file in WAL mode.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _add_missing(conn: Connection) -> None:
    """Bring a database made by an older shoal up to the tables: create_all adds
    missing tables only, so new nullable columns and new indexes are added here."""
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
        for index in table.indexes:
            index.create(conn, checkfirst=True)
