"""Persistence: SQLAlchemy tables and the queries on them (SQLite or PostgreSQL)."""

from shoal.store.database import Database, default_sqlite_url

__all__ = ["Database", "default_sqlite_url"]
