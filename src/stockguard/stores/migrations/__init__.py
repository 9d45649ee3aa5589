"""Alembic migrations, run programmatically (``stockguard migrate`` and ``serve``).

The same revisions apply to SQLite, PostgreSQL and MariaDB; alembic runs synchronously,
so it is handed the async engine's connection through ``run_sync``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from stockguard.stores.sql.store import SqlStore

SCRIPT_LOCATION = Path(__file__).parent


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


async def upgrade(store: SqlStore, revision: str = "head") -> None:
    def run(connection: Connection) -> None:
        command.upgrade(_config(connection), revision)

    async with store.engine.begin() as connection:
        await connection.run_sync(run)
