"""MariaDB and MySQL through asyncmy.

Transactions run at READ COMMITTED: InnoDB's default REPEATABLE READ takes gap locks on
inserts and range scans, which turns unrelated reservations into deadlocks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, event, literal_column
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

_DUPLICATE = {1062}
_RETRY = {1213}  # deadlock found
_UNAVAILABLE = {1205, 1040, 1053, 2002, 2003, 2006, 2013, 2055}  # lock wait timeout, gone away…


class MysqlBackend(Backend):
    name = "mysql"
    skip_locked = True

    def __init__(self, url: URL, pool_size: int = POOL_SIZE_DEFAULT) -> None:
        query = dict(url.query)
        query.setdefault("charset", "utf8mb4")
        super().__init__(url.set(drivername="mysql+asyncmy", query=query), pool_size)

    def create_engine(self) -> AsyncEngine:
        engine = create_async_engine(
            self.url,
            pool_size=self.pool_size,
            max_overflow=0,
            pool_timeout=POOL_TIMEOUT_S,
            pool_pre_ping=True,
            pool_recycle=3600,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {LOCK_TIMEOUT_S}")
            cursor.execute("SET SESSION time_zone = '+00:00'")
            cursor.close()

        return engine

    def now_ms(self) -> ColumnElement[int]:
        return literal_column("CAST(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)")

    def classify(self, error: BaseException) -> Failure:
        orig = orig_error(error)
        args = getattr(orig, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        if code in _DUPLICATE:
            return Failure.DUPLICATE
        if code in _RETRY:
            return Failure.RETRY
        if code in _UNAVAILABLE or isinstance(orig, OSError | TimeoutError | ConnectionError):
            return Failure.UNAVAILABLE
        return Failure.BUG
