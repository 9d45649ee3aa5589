"""The short contract every SQL backend file fulfils, and the choice by URL scheme.

One small module per backend (``sqlite.py``, ``postgres.py``, ``mysql.py``) holds all that
differs between them: driver URL, engine options, the clock expression, row-locking
clauses and how driver errors are classified. Everything else is shared SQLAlchemy Core.
"""

from __future__ import annotations

import enum
import importlib
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import ColumnElement
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

if TYPE_CHECKING:
    from stockguard.stores.sql.tx import Tx

POOL_SIZE_DEFAULT = 20
POOL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT_S = 10


class Failure(enum.Enum):
    """What a driver error means for the operation that raised it."""

    DUPLICATE = "duplicate"  # a unique key already exists: look the row up instead
    RETRY = "retry"  # deadlock or serialization failure: the transaction rolled back whole
    UNAVAILABLE = "unavailable"  # connection lost, lock wait timed out, server gone
    BUG = "bug"  # anything else: a constraint we should never hit


class Backend:
    name: ClassVar[str]
    skip_locked: ClassVar[bool] = False
    pool_timeout_s: ClassVar[float] = POOL_TIMEOUT_S
    """How long a caller may queue for a connection before it is answered 'busy'."""
    row_locks: ClassVar[bool] = True
    """False where the whole database is locked by the transaction instead (SQLite)."""

    def __init__(self, url: URL, pool_size: int = POOL_SIZE_DEFAULT) -> None:
        self.url = url
        self.pool_size = pool_size

    def create_engine(self) -> AsyncEngine:
        raise NotImplementedError

    def now_ms(self) -> ColumnElement[int]:
        """The database clock as integer epoch milliseconds, for use inside statements."""
        raise NotImplementedError

    def classify(self, error: BaseException) -> Failure:
        raise NotImplementedError

    def tx(self, connection: AsyncConnection) -> Tx:
        """The transaction API on ``connection``: a backend with faster batch statements
        returns its own ``Tx`` subclass (``postgres.PostgresTx``)."""
        from stockguard.stores.sql.tx import Tx

        return Tx(connection, self)

    def describe(self) -> str:
        """The URL without its password, for logs and reports."""
        return self.url.render_as_string(hide_password=True)


_SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("stockguard.stores.sql.sqlite", "SqliteBackend"),
    "sqlite+aiosqlite": ("stockguard.stores.sql.sqlite", "SqliteBackend"),
    "postgresql": ("stockguard.stores.sql.postgres", "PostgresBackend"),
    "postgres": ("stockguard.stores.sql.postgres", "PostgresBackend"),
    "postgresql+asyncpg": ("stockguard.stores.sql.postgres", "PostgresBackend"),
    "mysql": ("stockguard.stores.sql.mysql", "MysqlBackend"),
    "mariadb": ("stockguard.stores.sql.mysql", "MysqlBackend"),
    "mysql+asyncmy": ("stockguard.stores.sql.mysql", "MysqlBackend"),
    "mariadb+asyncmy": ("stockguard.stores.sql.mysql", "MysqlBackend"),
}


def backend_for(url: str, **options: Any) -> Backend:
    """Picks the backend by URL scheme; its driver is imported only when it is used."""
    parsed = make_url(url)
    try:
        module_name, class_name = _SCHEMES[parsed.drivername]
    except KeyError:
        known = ", ".join(sorted({s.split("+")[0] for s in _SCHEMES}))
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r} ({known})"
        ) from None
    backend_class: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return backend_class(parsed, **options)


def orig_error(error: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's wrapper."""
    return getattr(error, "orig", None) or error
