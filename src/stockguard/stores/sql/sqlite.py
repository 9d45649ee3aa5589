"""SQLite through aiosqlite: the embedded default.

SQLite locks the whole database per write transaction, so every write transaction
starts with ``BEGIN IMMEDIATE``: taking the write lock up front means two writers never
both read and then both try to upgrade (which SQLite answers with SQLITE_BUSY). WAL lets
readers run beside the writer; ``synchronous=FULL`` makes every commit durable (I5).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import ColumnElement, event, literal_column, pool
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stockguard.stores.sql.backend import POOL_TIMEOUT_S, Backend, Failure, orig_error

BUSY_TIMEOUT_MS = 10_000

READ_ONLY_OPTION = "stockguard_read_only"


class SqliteBackend(Backend):
    name = "sqlite"
    row_locks = False
    pool_timeout_s = POOL_TIMEOUT_S * 6  # one connection: a burst queues here

    def __init__(self, url: URL, pool_size: int = 1) -> None:
        # One connection per process: SQLite has one writer anyway, and queueing in the
        # pool (FIFO, no sleeping) beats polling on SQLITE_BUSY.
        super().__init__(url.set(drivername="sqlite+aiosqlite"), pool_size=1)

    @property
    def in_memory(self) -> bool:
        return self.url.database in (None, "", ":memory:")

    def create_engine(self) -> AsyncEngine:
        options: dict[str, Any] = {}
        if self.in_memory:
            options["poolclass"] = pool.StaticPool
        else:
            options.update(
                pool_size=self.pool_size, max_overflow=0, pool_timeout=POOL_TIMEOUT_S * 6
            )
        engine = create_async_engine(self.url, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Hand transaction control to the "begin" hook below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in (
                "PRAGMA journal_mode=WAL",
                "PRAGMA synchronous=FULL",
                "PRAGMA foreign_keys=ON",
                f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            ):
                cursor.execute(pragma)
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine

    def now_ms(self) -> ColumnElement[int]:
        return literal_column("CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)")

    def classify(self, error: BaseException) -> Failure:
        orig = orig_error(error)
        if isinstance(orig, sqlite3.IntegrityError) and "UNIQUE" in str(orig):
            return Failure.DUPLICATE
        if isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig):
            return Failure.UNAVAILABLE
        if isinstance(orig, sqlite3.OperationalError | OSError):
            return Failure.UNAVAILABLE
        return Failure.BUG
