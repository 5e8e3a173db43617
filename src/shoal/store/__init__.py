"""Persistence: SQLAlchemy tables and the queries on them (SQLite or PostgreSQL)."""

from shoal.store.database import Database, default_sqlite_url
from shoal.store.faults import StoreError, StoreFull, StoreUnavailable

__all__ = ["Database", "StoreError", "StoreFull", "StoreUnavailable", "default_sqlite_url"]
