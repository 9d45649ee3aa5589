"""The SQL store: the session (a transaction is the unit of work; retries; driver errors
classified per backend); the read queries of the listings are in ``views.py``.

The use cases every store shares (confirm, release, expiry, admin edits) are in
``stores/operations.py``, written against the transaction API (``tx.py``); the
statements a transaction runs are in ``tx.py`` (and ``postgres.PostgresTx``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from stockguard import domain
from stockguard.domain import (
    Movement,
    Product,
    Reservation,
    Status,
    StockLevel,
)
from stockguard.domain.events import EventRecorder, EventType, StoredEvent
from stockguard.domain.kits import Kit
from stockguard.stores.contract import DuplicateKey, RetryableConflict
from stockguard.stores.operations import (
    EXPIRE_BATCH_MAX,
    StoreOperations,
)
from stockguard.stores.sql import kits as kit_rows
from stockguard.stores.sql import outbox, views
from stockguard.stores.sql.backend import Backend, Failure, backend_for
from stockguard.stores.sql.tx import Tx

T = TypeVar("T")

RETRY_MAX = 5
"""Attempts for a transaction the database rolled back whole (deadlock, serialization)."""

logger = logging.getLogger("stockguard.store")


class SqlStore(StoreOperations):
    """The store on a SQL database: the session (transactions, retries, driver errors
    classified), the shared use cases (``StoreOperations``), and the listing queries
    of ``views.py`` under the contract's names."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine = backend.create_engine()
        self._slots = asyncio.Semaphore(backend.pool_size)
        self._connect_failed_at_s = 0.0
        self.counters: Counter[str] = Counter()
        """``conflict_retries``: transactions the database aborted (deadlock,
        serialization) and ``run`` ran again. Writers that keep one lock order make none."""
        self.recorded_events: frozenset[EventType] = frozenset()
        """The event types write transactions put in the outbox (docs/events.md)."""

    @classmethod
    def open(cls, url: str, **options: Any) -> SqlStore:
        return cls(backend_for(url, **options))

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        from stockguard.stores.migrations import upgrade  # alembic is only needed here

        await upgrade(self)

    # ------------------------------------------------------------------ transactions

    @asynccontextmanager
    async def transaction(
        self, *, read_only: bool = False, snapshot: bool = False
    ) -> AsyncIterator[Tx]:
        """A transaction that rolls back unless the body calls ``tx.commit()``.

        ``snapshot``: every statement reads the same snapshot (REPEATABLE READ on
        PostgreSQL and MariaDB; a SQLite read transaction is one already). The audit reads
        several tables while sales go on: at READ COMMITTED a hold committed between two
        of its statements would show as a violation that is not there.

        Driver errors come out typed: DuplicateKey, RetryableConflict, or StoreUnavailable
        for anything that says the database cannot answer now. Callers queue for a
        connection on a FIFO semaphore (bounded by ``Backend.pool_timeout_s``) rather than inside
        the pool: when a connect fails, every caller queued before it is answered at
        once instead of leaving each to sit out the pool timeout against a dead server.
        """
        arrived_s = time.monotonic()
        try:
            async with asyncio.timeout(self.backend.pool_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise domain.StoreUnavailable("no database connection free: busy") from None
        connected = False
        try:
            if self._connect_failed_at_s > arrived_s:
                raise domain.StoreUnavailable("database unreachable while this request queued")
            async with self.engine.connect() as connection:
                connected = True
                try:
                    if read_only:
                        connection = await connection.execution_options(stockguard_read_only=True)
                    if snapshot and self.backend.name != "sqlite":
                        connection = await connection.execution_options(
                            isolation_level="REPEATABLE READ"
                        )
                    await connection.begin()
                    tx = self.backend.tx(connection)
                    if self.recorded_events and not read_only:
                        tx.recorder = EventRecorder(self.recorded_events)
                    try:
                        yield tx
                    finally:
                        if not tx.committed:
                            await connection.rollback()
                            await tx.release_named_locks()
                except (sa_exc.DBAPIError, OSError) as error:
                    if self._lost(error):
                        # The driver may still think it is mid-operation on a connection the
                        # server dropped: it must never serve another transaction.
                        await _discard(connection, error)
                    raise
        except sa_exc.TimeoutError as error:
            logger.warning("no database connection free: %s", error)
            raise domain.StoreUnavailable("no database connection free: busy") from error
        except (sa_exc.DBAPIError, OSError) as error:
            failure = self.backend.classify(error)
            if failure is Failure.DUPLICATE:
                raise DuplicateKey(str(error)) from error
            if failure is Failure.RETRY:
                raise RetryableConflict(str(error)) from error
            if failure is Failure.UNAVAILABLE or isinstance(error, OSError):
                if not connected:
                    self._connect_failed_at_s = time.monotonic()
                # The driver's text names statements and bound values (other buyers' order
                # ids in a batch): it goes to the log, the answer says what happened.
                logger.warning(
                    "database unavailable (%s): %s", type(error).__name__, _one_line(error)
                )
                raise domain.StoreUnavailable(
                    "database unreachable" if not connected else "database connection lost"
                ) from error
            raise
        finally:
            self._slots.release()

    def _lost(self, error: BaseException) -> bool:
        """Whether ``error`` leaves its connection unusable (then it is discarded)."""
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return False  # SQLAlchemy saw the disconnect and discarded it already
        return isinstance(error, OSError) or self.backend.classify(error) is Failure.UNAVAILABLE

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Runs ``work`` again when the database rolled it back to break a deadlock."""
        for attempt in range(RETRY_MAX):
            try:
                return await work()
            except RetryableConflict as conflict:
                self.counters["conflict_retries"] += 1
                if attempt == RETRY_MAX - 1:
                    raise domain.StoreUnavailable(
                        "the database kept aborting the transaction"
                    ) from conflict
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ kits

    async def define_kit(self, kit: Kit) -> tuple[Kit, bool]:
        return await kit_rows.define_kit(self, kit)

    async def kits(self, skus: Sequence[str]) -> dict[str, Kit]:
        return await kit_rows.kits(self, skus)

    async def list_kits(self, *, limit: int = 100, after: str | None = None) -> list[Kit]:
        return await kit_rows.list_kits(self, limit, after)

    # ------------------------------------------------------------------ events outbox

    async def set_low_stock_threshold(self, sku: str, threshold: int | None) -> None:
        await outbox.set_low_stock_threshold(self, sku, threshold)

    async def low_stock_threshold(self, sku: str) -> int | None:
        return await outbox.low_stock_threshold(self, sku)

    async def sequence_events(self, limit: int = outbox.SEQUENCE_BATCH_MAX) -> int:
        return await outbox.sequence(self, limit)

    async def events_after(
        self, after: int, limit: int, types: frozenset[EventType] | None = None
    ) -> list[StoredEvent]:
        return await outbox.events_after(self, after, limit, types)

    # ------------------------------------------------------------------ read queries
    # The listing queries are in views.py; these keep the ``Store`` contract's names.

    async def list_reservations(
        self,
        *,
        status: Status | None = None,
        sku: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Reservation], str | None]:
        return await views.list_reservations(
            self,
            status=status,
            sku=sku,
            order_id=order_id,
            customer_id=customer_id,
            limit=limit,
            cursor=cursor,
        )

    async def list_stock(
        self, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[StockLevel], str | None]:
        return await views.list_stock(self, prefix=prefix, limit=limit, cursor=cursor)

    async def movements(
        self, sku: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Movement], str | None]:
        return await views.movements(self, sku, limit=limit, cursor=cursor)

    async def list_products(
        self, *, search: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Product]:
        return await views.list_products(self, search=search, limit=limit, after=after)

    async def list_standalone_stock(
        self, *, search: str | None = None, limit: int = 100
    ) -> list[StockLevel]:
        return await views.list_standalone_stock(self, search=search, limit=limit)


async def _discard(connection: AsyncConnection, error: BaseException) -> None:
    """Invalidates ``connection``: the pool closes it instead of taking it back."""
    try:
        await connection.invalidate(error)
    except Exception as failure:  # closing a dead connection may fail too: it is gone anyway
        logger.debug("discarding a lost connection failed: %r", failure)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


__all__ = ["EXPIRE_BATCH_MAX", "DuplicateKey", "RetryableConflict", "SqlStore"]
