"""PostgreSQL through asyncpg."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, literal_column
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stockguard.stores.sql.backend import (
    CONNECT_TIMEOUT_S,
    LOCK_TIMEOUT_S,
    POOL_SIZE_DEFAULT,
    POOL_TIMEOUT_S,
    Backend,
    Failure,
    orig_error,
)

_RETRY_CODES = {"40001", "40P01"}  # serialization failure, deadlock detected
_UNAVAILABLE_PREFIXES = (
    "08",
    "53",
    "57",
    "55P03",
)  # connection, resources, shutdown/cancel, lock timeout


class PostgresBackend(Backend):
    name = "postgres"
    skip_locked = True

    def __init__(self, url: URL, pool_size: int = POOL_SIZE_DEFAULT) -> None:
        super().__init__(url.set(drivername="postgresql+asyncpg"), pool_size)

    def create_engine(self) -> AsyncEngine:
        connect_args: dict[str, Any] = {
            "timeout": CONNECT_TIMEOUT_S,
            "server_settings": {
                "lock_timeout": f"{LOCK_TIMEOUT_S}s",
                "application_name": "stockguard",
            },
        }
        return create_async_engine(
            self.url,
            pool_size=self.pool_size,
            max_overflow=0,
            pool_timeout=POOL_TIMEOUT_S,
            pool_pre_ping=True,
            isolation_level="READ COMMITTED",
            connect_args=connect_args,
        )

    def now_ms(self) -> ColumnElement[int]:
        return literal_column("floor(extract(epoch from clock_timestamp()) * 1000)::bigint")

    def classify(self, error: BaseException) -> Failure:
        orig = orig_error(error)
        code = str(getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None) or "")
        if code == "23505":
            return Failure.DUPLICATE
        if code in _RETRY_CODES:
            return Failure.RETRY
        if code.startswith(_UNAVAILABLE_PREFIXES) or isinstance(orig, OSError | TimeoutError):
            return Failure.UNAVAILABLE
        if not code and "connection" in str(orig).lower():
            return Failure.UNAVAILABLE
        if _protocol_out_of_step(error):
            return Failure.UNAVAILABLE
        return Failure.BUG


def _protocol_out_of_step(error: BaseException) -> bool:
    """asyncpg's own state errors: the connection died (or was cancelled) mid-operation and
    the client protocol is stuck, e.g. ``InternalClientError: cannot switch to state 12;
    another operation (2) is in progress`` after ``pg_terminate_backend``. The connection
    cannot run anything else; the operation may be retried on another one."""
    seen: BaseException | None = error
    for _ in range(4):  # SQLAlchemy's wrapper -> the dialect's adapter -> asyncpg's own
        if seen is None:
            return False
        names = {cls.__name__ for cls in type(seen).__mro__}
        if "InternalClientError" in names:
            return True
        if "InterfaceError" in names and "another operation is" in str(seen):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False
