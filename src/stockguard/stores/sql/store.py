"""The SQL store: transactions (the unit of work) and the operations every strategy shares.

Strategies differ only in how they serialise *holding* stock. Confirm, release, expiry and
admin edits are relative updates on rows the transaction has locked (or, on SQLite, on a
database it has locked), so they are correct under any reservation strategy and live here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stockguard import domain
from stockguard.domain import (
    Movement,
    Product,
    ProductSpec,
    Reservation,
    Status,
    StockLevel,
    Variant,
)
from stockguard.stores.sql import bulk
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.backend import Backend, Failure, backend_for
from stockguard.stores.sql.tx import Tx, reservation_filters

T = TypeVar("T")

RETRY_MAX = 5
"""Attempts for a transaction the database rolled back whole (deadlock, serialization)."""
EXPIRE_BATCH_MAX = 1_000
LIST_LIMIT_MAX = 500
SEQ_MAX = 2**63 - 1
"""The largest ``seq`` a BIGINT holds: a cursor past it names no row and no database
takes it as a parameter (asyncpg: DataError; SQLite: OverflowError)."""
FILTER_TEXT_LEN_MAX = max(domain.PRODUCT_NAME_LEN_MAX, domain.ORDER_ID_LEN_MAX)
_CURSOR = re.compile(r"[0-9]{1,19}")

logger = logging.getLogger("stockguard.store")


class DuplicateKey(Exception):
    """A unique key already existed; the transaction was rolled back."""


class RetryableConflict(Exception):
    """The database rolled the transaction back to break a deadlock; run it again."""


class SqlStore:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.engine = backend.create_engine()
        self._slots = asyncio.Semaphore(backend.pool_size)
        self._connect_failed_at_s = 0.0
        self.counters: Counter[str] = Counter()
        """``conflict_retries``: transactions the database aborted (deadlock,
        serialization) and ``run`` ran again. Writers that keep one lock order make none."""

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
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[Tx]:
        """A transaction that rolls back unless the body calls ``tx.commit()``.

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
                    await connection.begin()
                    tx = Tx(connection, self.backend)
                    try:
                        yield tx
                    finally:
                        if not tx.committed:
                            await connection.rollback()
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

    # ------------------------------------------------------------------ reservations

    async def replay(self, tx: Tx, request: domain.ReserveRequest) -> domain.ReserveOutcome | None:
        """The earlier answer for this order_id, if any (idempotency)."""
        earlier = await tx.reservation_by_order(request.order_id)
        if earlier is None:
            return None
        if not earlier.same_request(request.lines):
            raise domain.IdempotencyConflict(request.order_id, earlier.id)
        return domain.ReserveOutcome(earlier, created=False)

    async def replay_after_duplicate(self, request: domain.ReserveRequest) -> domain.ReserveOutcome:
        """Another request with the same order_id committed first: answer as its replay."""
        async with self.transaction(read_only=True) as tx:
            outcome = await self.replay(tx, request)
        assert outcome is not None, "a duplicate order_id must be readable after it committed"
        return outcome

    async def out_of_stock(self, request: domain.ReserveRequest) -> domain.StockguardError:
        """The error for a refused request, with every line's shortfall as of now."""
        async with self.transaction(read_only=True) as tx:
            levels = await tx.levels(request.skus)
        try:
            short = domain.shortfalls(levels, request.lines)
        except domain.UnknownSku as unknown:
            return unknown
        if not short:  # stock came back between the refusal and this read
            short = tuple(
                domain.Shortfall(line.sku, line.quantity, levels[line.sku].available)
                for line in request.lines
            )
        return domain.OutOfStock(short)

    @staticmethod
    def new_reservation(request: domain.ReserveRequest, now_ms: int) -> Reservation:
        return Reservation(
            id=str(uuid.uuid4()),
            order_id=request.order_id,
            customer_id=request.customer_id,
            status=Status.HELD,
            lines=request.lines,
            expires_at_ms=now_ms + request.ttl_s * 1000,
            created_at_ms=now_ms,
        )

    async def confirm(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.CONFIRMED)

    async def release(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.RELEASED)

    async def _end(self, reservation_id: str, target: Status) -> Reservation:
        async def work() -> Reservation:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                found = await tx.reservation(reservation_id, lock=True)
                if found is None:
                    raise domain.ReservationNotFound(reservation_id)
                if found.status is Status.HELD and now_ms >= found.expires_at_ms:
                    # Past expiry by the database clock: it ends as expired, whatever was asked.
                    await self._end_held(tx, [found], Status.EXPIRED, now_ms)
                    await tx.commit()
                    if target is Status.CONFIRMED:
                        raise domain.ReservationExpired(reservation_id)
                    return _with_status(found, Status.EXPIRED)
                if not domain.check_transition(found, target, now_ms):
                    return found
                await self._end_held(tx, [found], target, now_ms)
                await tx.commit()
                return _with_status(found, target)

        return await self.run(work)

    async def _end_held(
        self, tx: Tx, held: Sequence[Reservation], target: Status, now_ms: int
    ) -> None:
        ended = await tx.end_reservations([r.id for r in held], target, now_ms)
        assert ended == len(held), "the rows were locked as held"
        if target is Status.CONFIRMED:
            for reservation in held:
                await tx.sell(reservation.lines, reservation.id, now_ms)
        else:
            deltas: dict[str, int] = {}
            for reservation in held:
                for line in reservation.lines:
                    deltas[line.sku] = deltas.get(line.sku, 0) - line.quantity
            await tx.add_reserved(deltas, now_ms)

    async def expire_due(self, limit: int = EXPIRE_BATCH_MAX) -> int:
        """Ends every held reservation past its expiry, in batches of ``limit``.

        Each batch: lock due rows (skipping those another sweeper or a confirm holds),
        mark them expired, then lock their stock rows and lower ``reserved`` by the
        aggregated amounts in one statement.
        """
        assert 1 <= limit <= EXPIRE_BATCH_MAX
        total = 0
        while True:

            async def batch() -> int:
                async with self.transaction() as tx:
                    now_ms = await tx.now_ms()
                    ids = await tx.due_reservation_ids(now_ms, limit)
                    if not ids:
                        return 0
                    totals = await tx.held_quantity_by_sku(ids)
                    ended = await tx.end_reservations(ids, Status.EXPIRED, now_ms)
                    assert ended == len(ids), "due rows were locked as held"
                    # Lock the stock rows in SKU order in one statement, then move them all
                    # in one more: the hot rows wait on no round trip per SKU in between.
                    await tx.levels(list(totals), lock=True)
                    await bulk.add_reserved(tx, {sku: -q for sku, q in totals.items()}, now_ms)
                    await tx.commit()
                    return ended

            ended = await self.run(batch)
            total += ended
            if ended < limit:
                return total

    async def get_reservation(self, reservation_id: str) -> Reservation:
        async with self.transaction(read_only=True) as tx:
            found = await tx.reservation(reservation_id)
        if found is None:
            raise domain.ReservationNotFound(reservation_id)
        return found

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
        """Newest first; ``cursor`` is the opaque position returned by the previous page."""
        assert 1 <= limit <= LIST_LIMIT_MAX
        before = _parse_cursor(cursor)
        sku = _filter_text(sku, "sku")
        order_id = _filter_text(order_id, "order_id")
        customer_id = _filter_text(customer_id, "customer_id")
        async with self.transaction(read_only=True) as tx:
            rows = (
                await tx.connection.execute(
                    select(t.reservations)
                    .where(reservation_filters(status, sku, order_id, customer_id, before))
                    .order_by(t.reservations.c.seq.desc())
                    .limit(limit + 1)
                )
            ).all()
            items = await tx.reservations_from_rows(rows[:limit])
        next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
        return items, next_cursor

    # ------------------------------------------------------------------ stock

    async def stock(self, skus: Sequence[str]) -> list[StockLevel]:
        async with self.transaction(read_only=True) as tx:
            levels = await tx.levels(skus)
        return [levels[sku] for sku in sorted(levels)]

    async def list_stock(
        self, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[StockLevel], str | None]:
        """All SKUs in code order, for admin listings."""
        assert 1 <= limit <= LIST_LIMIT_MAX
        prefix = _filter_text(prefix, "prefix")
        cursor = _filter_text(cursor, "cursor")
        query = select(t.stock_levels).order_by(t.stock_levels.c.sku).limit(limit + 1)
        if prefix:
            query = query.where(t.stock_levels.c.sku.startswith(prefix, autoescape=True))
        if cursor:
            query = query.where(t.stock_levels.c.sku > cursor)
        async with self.transaction(read_only=True) as tx:
            rows = (await tx.connection.execute(query)).all()
        levels = [StockLevel(r.sku, r.on_hand, r.reserved, r.version) for r in rows[:limit]]
        return levels, (levels[-1].sku if len(rows) > limit else None)

    async def set_on_hand(
        self, sku: str, on_hand: int, expected_on_hand: int | None = None
    ) -> StockLevel:
        """Compare-and-set (docs/design.md#seed-001); creates the SKU if absent and not expected."""

        async def work() -> StockLevel:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                current = (await tx.levels([sku], lock=True)).get(sku)
                if current is None:
                    if expected_on_hand is not None:
                        raise domain.UnknownSku([sku])
                    await tx.insert_levels({sku: on_hand}, now_ms)
                    await tx.record_movements(
                        [Movement(now_ms, sku, on_hand, on_hand, "created", None)]
                    )
                else:
                    domain.check_on_hand_change(current, on_hand, expected_on_hand)
                    if on_hand == current.on_hand:
                        return current
                    await tx.write_on_hand(sku, on_hand, now_ms)
                    await tx.record_movements(
                        [Movement(now_ms, sku, on_hand - current.on_hand, on_hand, "set", None)]
                    )
                after = (await tx.levels([sku]))[sku]
                await tx.commit()
                return after

        try:
            return await self.run(work)
        except DuplicateKey:  # created concurrently by another admin: now it exists
            return await self.run(work)

    async def adjust(self, sku: str, delta: int, reason: str) -> StockLevel:
        async def work() -> StockLevel:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                current = (await tx.levels([sku], lock=True)).get(sku)
                if current is None:
                    raise domain.UnknownSku([sku])
                on_hand = current.on_hand + delta
                domain.check_on_hand_change(current, on_hand, None)
                await tx.write_on_hand(sku, on_hand, now_ms)
                await tx.record_movements([Movement(now_ms, sku, delta, on_hand, reason, None)])
                after = (await tx.levels([sku]))[sku]
                await tx.commit()
                return after

        return await self.run(work)

    async def movements(
        self, sku: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Movement], str | None]:
        """A SKU's ledger, newest first."""
        assert 1 <= limit <= LIST_LIMIT_MAX
        before = _parse_cursor(cursor)
        query = (
            select(t.stock_movements)
            .where(t.stock_movements.c.sku == sku)
            .order_by(t.stock_movements.c.seq.desc())
            .limit(limit + 1)
        )
        if before is not None:
            query = query.where(t.stock_movements.c.seq < before)
        async with self.transaction(read_only=True) as tx:
            if not await tx.existing_skus([sku]):
                raise domain.UnknownSku([sku])
            rows = (await tx.connection.execute(query)).all()
        items = [
            Movement(r.at_ms, r.sku, r.delta, r.on_hand_after, r.reason, r.reservation_id)
            for r in rows[:limit]
        ]
        return items, (str(rows[limit - 1].seq) if len(rows) > limit else None)

    # ------------------------------------------------------------------ products

    async def create_product(self, spec: ProductSpec) -> Product:
        product_id = str(uuid.uuid4())
        skus = [v.sku for v in spec.variants]
        try:
            async with self.transaction() as tx:
                taken = await tx.existing_skus(skus)
                if taken:
                    raise domain.DuplicateSku(taken)
                now_ms = await tx.now_ms()
                await tx.insert_levels({v.sku: v.on_hand for v in spec.variants}, now_ms)
                await tx.record_movements(
                    [
                        Movement(now_ms, v.sku, v.on_hand, v.on_hand, "created", None)
                        for v in spec.variants
                    ]
                )
                await tx.insert_product(
                    product_id,
                    spec.name,
                    spec.options,
                    [(v.sku, v.options) for v in spec.variants],
                    now_ms,
                )
                await tx.commit()
        except DuplicateKey:
            raise domain.DuplicateSku(skus) from None
        return await self.get_product(product_id)

    async def get_product(self, product_id: str) -> Product:
        async with self.transaction(read_only=True) as tx:
            found = await tx.product_rows(product_id)
            if found is None:
                raise domain.ProductNotFound(product_id)
            name, options, variants = found
            levels = await tx.levels([sku for sku, _ in variants])
        return Product(
            product_id,
            name,
            options,
            tuple(Variant(sku, opts, levels[sku]) for sku, opts in variants),
        )

    async def list_products(self, *, search: str | None = None, limit: int = 50) -> list[Product]:
        """Products whose name or one of whose SKUs contains ``search`` (any case), by name.

        For the admin page: three queries whatever the number of products (products,
        their variants, their stock), each bounded by ``limit``.
        """
        assert 1 <= limit <= LIST_LIMIT_MAX
        search = _filter_text(search, "search")
        query = select(t.products).order_by(t.products.c.name, t.products.c.id).limit(limit)
        if search:
            needle = search.lower()
            query = query.where(
                or_(
                    func.lower(t.products.c.name).contains(needle, autoescape=True),
                    t.products.c.id.in_(
                        select(t.product_variants.c.product_id).where(
                            func.lower(t.product_variants.c.sku).contains(needle, autoescape=True)
                        )
                    ),
                )
            )
        async with self.transaction(read_only=True) as tx:
            rows = (await tx.connection.execute(query)).all()
            if not rows:
                return []
            variant_rows = (
                await tx.connection.execute(
                    select(t.product_variants)
                    .where(t.product_variants.c.product_id.in_([row.id for row in rows]))
                    .order_by(t.product_variants.c.product_id, t.product_variants.c.position)
                )
            ).all()
            levels = await tx.levels([v.sku for v in variant_rows])
        variants: dict[str, list[Variant]] = {row.id: [] for row in rows}
        for v in variant_rows:
            variants[v.product_id].append(Variant(v.sku, json.loads(v.options_json), levels[v.sku]))
        return [
            Product(
                row.id,
                row.name,
                {k: tuple(vs) for k, vs in json.loads(row.options_json).items()},
                tuple(variants[row.id]),
            )
            for row in rows
        ]

    async def list_standalone_stock(
        self, *, search: str | None = None, limit: int = 100
    ) -> list[StockLevel]:
        """SKUs that belong to no product (made by ``set_on_hand``), in code order."""
        assert 1 <= limit <= LIST_LIMIT_MAX
        search = _filter_text(search, "search")
        query = (
            select(t.stock_levels)
            .where(t.stock_levels.c.sku.not_in(select(t.product_variants.c.sku)))
            .order_by(t.stock_levels.c.sku)
            .limit(limit)
        )
        if search:
            query = query.where(
                func.lower(t.stock_levels.c.sku).contains(search.lower(), autoescape=True)
            )
        async with self.transaction(read_only=True) as tx:
            rows = (await tx.connection.execute(query)).all()
        return [StockLevel(r.sku, r.on_hand, r.reserved, r.version) for r in rows]


def _with_status(reservation: Reservation, status: Status) -> Reservation:
    return Reservation(
        reservation.id,
        reservation.order_id,
        reservation.customer_id,
        status,
        reservation.lines,
        reservation.expires_at_ms,
        reservation.created_at_ms,
    )


async def _discard(connection: AsyncConnection, error: BaseException) -> None:
    """Invalidates ``connection``: the pool closes it instead of taking it back."""
    try:
        await connection.invalidate(error)
    except Exception as failure:  # closing a dead connection may fail too: it is gone anyway
        logger.debug("discarding a lost connection failed: %r", failure)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _parse_cursor(cursor: str | None) -> int | None:
    """A page cursor: the ``seq`` of a row, as ASCII digits (``str.isdigit`` also takes
    "²", which ``int`` refuses), no larger than the signed 64-bit column can hold."""
    if cursor is None:
        return None
    if _CURSOR.fullmatch(cursor) is None or int(cursor) > SEQ_MAX:
        raise domain.InvalidInput("cursor", "is not a cursor this service returned")
    return int(cursor)


def _filter_text(value: str | None, field_name: str) -> str | None:
    """A text filter, refused when it holds what no stored value can (control characters:
    PostgreSQL refuses NUL outright) or is longer than any stored value."""
    if not value:
        return value  # None: no filter; "": matches nothing, as before
    return domain.validate_filter_text(value, field_name, FILTER_TEXT_LEN_MAX)
