"""The throwaway PostgreSQL server used by the test suite actually works."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pgserver import PostgresServer


async def _exercise(url: str) -> None:
    """Connect with SQLAlchemy/asyncpg, run ``select 1`` and create/drop a table."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1
            user = (await conn.execute(text("select current_user"))).scalar_one()
            assert user == "shoal"
            await conn.execute(text("create table probe (id serial primary key, name text)"))
            await conn.execute(text("insert into probe (name) values ('a'), ('b')"))
            count = (await conn.execute(text("select count(*) from probe"))).scalar_one()
            assert count == 2
            await conn.execute(text("drop table probe"))
        async with engine.connect() as conn:
            exists = await conn.execute(text("select to_regclass('public.probe')"))
            assert exists.scalar_one() is None
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_server_roundtrip() -> None:
    with PostgresServer() as pg:
        assert pg.url.startswith("postgresql+asyncpg://shoal:")
        assert pg.url.endswith(f"@127.0.0.1:{pg.port}/shoal")
        base_dir: Path = pg.base_dir
        assert base_dir.is_dir()
        asyncio.run(_exercise(pg.url))
    assert not base_dir.exists()


async def _commit_then_count(pg: PostgresServer) -> None:
    engine = create_async_engine(pg.url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("create table kept (id int primary key)"))
        for n in range(20):
            async with engine.begin() as conn:
                await conn.execute(text("insert into kept values (:n)"), {"n": n})
    finally:
        await engine.dispose()


async def _count(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("select count(*) from kept"))).scalar_one()
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_a_durable_server_keeps_every_commit_across_an_immediate_stop() -> None:
    with PostgresServer(durable=True) as pg:
        asyncio.run(_commit_then_count(pg))
        pg.stop()  # at once: the last commits are at most microseconds old
        pg.start()
        assert asyncio.run(_count(pg.url)) == 20
