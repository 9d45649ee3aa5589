"""Alembic migrations, run programmatically (``stockguard migrate`` and ``serve``).

The same revisions apply to SQLite, PostgreSQL and MariaDB; alembic runs synchronously,
so it is handed the async engine's connection through ``run_sync``.

Many hosts may start ``serve`` at once on one empty database: each migrates first, so the
upgrade takes a database-wide lock before it reads the schema's revision, and the hosts
after the first find it at head and do nothing. PostgreSQL: a transaction-scoped advisory
lock (its DDL is transactional too). MariaDB: a named ``GET_LOCK`` held by the session
until released (its DDL commits as it goes). SQLite: the ``BEGIN IMMEDIATE`` every
stockguard transaction starts with is already the database's one write lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    from stockguard.stores.sql.store import SqlStore

SCRIPT_LOCATION = Path(__file__).parent


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


LOCK_NAME = "stockguard_migrate"
LOCK_KEY = 0x73746B67  # "stkg": the advisory lock key, one per database
LOCK_WAIT_S = 600
"""How long a host waits for another's migration before giving up (MariaDB's GET_LOCK)."""


async def upgrade(store: SqlStore, revision: str = "head") -> None:
    backend = store.backend.name

    def run(connection: Connection) -> None:
        if backend == "postgres":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        elif backend == "mysql":
            got = connection.execute(
                text("SELECT GET_LOCK(:name, :wait_s)"), {"name": LOCK_NAME, "wait_s": LOCK_WAIT_S}
            ).scalar()
            if got != 1:
                raise RuntimeError(f"another host held the migration lock for {LOCK_WAIT_S} s")
        try:
            command.upgrade(_config(connection), revision)
        finally:
            if backend == "mysql":
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})

    async with store.engine.connect() as connection:
        sqlite = await _sqlite_driver(connection) if backend == "sqlite" else None
        if sqlite is not None:
            await sqlite.execute("PRAGMA foreign_keys=OFF")
        try:
            async with connection.begin():
                await connection.run_sync(run)
                if sqlite is not None:
                    dangling = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if dangling:
                        raise RuntimeError(f"migration left rows without their parent: {dangling}")
        finally:
            if sqlite is not None:
                await sqlite.execute("PRAGMA foreign_keys=ON")


async def _sqlite_driver(connection: AsyncConnection) -> Any:
    """The aiosqlite connection under ``connection``, before any transaction: SQLite
    changes a CHECK by rebuilding the table (copy, drop, rename), and dropping
    ``stock_levels`` with foreign keys on would trip every key that points at it although
    the copy has every row. ``PRAGMA foreign_keys`` is ignored inside a transaction, so it
    is turned off here, and the keys are checked (``foreign_key_check``) before commit."""
    raw = await connection.get_raw_connection()
    return raw.driver_connection


def head_revision() -> str | None:
    """The newest revision this version of stockguard ships."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return ScriptDirectory.from_config(config).get_current_head()


async def current_revision(store: SqlStore) -> str | None:
    """The revision the database is at (None: never migrated)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with store.engine.connect() as connection:
        return await connection.run_sync(read)
