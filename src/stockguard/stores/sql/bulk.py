"""Reads sized for batch writers: one statement per batch, whatever the batch size.

``Tx.reservations_by_order`` splits long lists into ``IN (…)`` chunks of 500 bound
parameters, which SQLAlchemy renders anew for each statement. The coalescing writer and
the sold-out fast path look up to thousands of order_ids at once, many times a second; on
PostgreSQL one statement with a single array parameter does the same index look-ups for
a fraction of the client time (measured: ~2 ms instead of ~8 ms for 1,000 ids). Other
backends keep the chunked ``IN``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select, text, update

from stockguard.domain import Reservation
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.tx import IN_CLAUSE_MAX, Tx

ORDER_IDS_MAX = 100_000
"""Order ids in one array parameter: bounds the statement a batch can send."""


_BY_ORDER_PG = text(
    "SELECT r.* FROM unnest(CAST(:order_ids AS varchar[])) AS wanted(order_id) "
    "JOIN reservations AS r ON r.order_id = wanted.order_id"
)


async def reservations_by_order(tx: Tx, order_ids: Sequence[str]) -> dict[str, Reservation]:
    """Every stored reservation whose order_id is in ``order_ids``, by order_id.

    A join with ``unnest(array)`` rather than ``order_id = ANY(array)``: once PostgreSQL
    caches a generic plan for ``= ANY`` it may scan the table comparing every row with
    every id (measured: 10 ms instead of 1.5 ms per 1,000 ids); the join stays linear.
    """
    if tx.backend.name != "postgres" or not order_ids:
        return await tx.reservations_by_order(order_ids)
    unique = sorted(set(order_ids))
    assert len(unique) <= ORDER_IDS_MAX
    rows = (await tx.connection.execute(_BY_ORDER_PG, {"order_ids": unique})).all()
    return {r.order_id: r for r in await tx.reservations_from_rows(rows)}


async def reservations_by_id(
    tx: Tx, reservation_ids: Sequence[str], *, lock: bool = False
) -> dict[str, Reservation]:
    """Reservations by id; with ``lock`` their rows are locked in id order (one statement
    per ``IN_CLAUSE_MAX`` ids)."""
    found: dict[str, Reservation] = {}
    unique = sorted(set(reservation_ids))
    for start in range(0, len(unique), IN_CLAUSE_MAX):
        query = (
            select(t.reservations)
            .where(t.reservations.c.id.in_(unique[start : start + IN_CLAUSE_MAX]))
            .order_by(t.reservations.c.id)
        )
        if lock and tx.backend.row_locks:
            query = query.with_for_update()
        rows = (await tx.connection.execute(query)).all()
        found.update((r.id, r) for r in await tx.reservations_from_rows(rows))
    return found


async def move_levels(tx: Tx, deltas: Mapping[str, tuple[int, int]], now_ms: int) -> None:
    """Moves (on_hand, reserved) of stock_levels rows by a signed amount, in SKU order:
    one statement per SKU, however many reservations the amounts add up."""
    s = t.stock_levels.c
    for sku, (on_hand, reserved) in sorted(deltas.items()):
        if on_hand == 0 and reserved == 0:
            continue
        await tx.connection.execute(
            update(t.stock_levels)
            .where(s.sku == sku)
            .values(
                on_hand=s.on_hand + on_hand,
                reserved=s.reserved + reserved,
                version=s.version + 1,
                updated_at_ms=now_ms,
            )
        )


_INSERT_RESERVATIONS_PG = text(
    "INSERT INTO reservations "
    "(id, order_id, customer_id, status, expires_at_ms, created_at_ms) "
    "SELECT * FROM unnest(CAST(:id AS varchar[]), CAST(:order_id AS varchar[]), "
    "CAST(:customer_id AS varchar[]), CAST(:status AS varchar[]), "
    "CAST(:expires_at_ms AS bigint[]), CAST(:created_at_ms AS bigint[]))"
)
_INSERT_LINES_PG = text(
    "INSERT INTO reservation_lines (reservation_id, sku, quantity) "
    "SELECT * FROM unnest(CAST(:reservation_id AS varchar[]), CAST(:sku AS varchar[]), "
    "CAST(:quantity AS bigint[]))"
)


async def insert_reservations(tx: Tx, reservations: Sequence[Reservation]) -> None:
    """Every reservation of a batch and its lines: two statements whatever the count.

    On PostgreSQL each is one ``INSERT … SELECT FROM unnest(arrays)``, one parameter per
    column (measured: ~40 ms instead of ~68 ms for 1,000 holds, the first batch of a
    flash sale); elsewhere ``Tx.insert_reservations`` (multi-row executemany).
    """
    if tx.backend.name != "postgres" or not reservations:
        await tx.insert_reservations(reservations)
        return
    await tx.connection.execute(
        _INSERT_RESERVATIONS_PG,
        {
            "id": [r.id for r in reservations],
            "order_id": [r.order_id for r in reservations],
            "customer_id": [r.customer_id for r in reservations],
            "status": [r.status.value for r in reservations],
            "expires_at_ms": [r.expires_at_ms for r in reservations],
            "created_at_ms": [r.created_at_ms for r in reservations],
        },
    )
    lines = [(r.id, line) for r in reservations for line in r.lines]
    await tx.connection.execute(
        _INSERT_LINES_PG,
        {
            "reservation_id": [rid for rid, _ in lines],
            "sku": [line.sku for _, line in lines],
            "quantity": [line.quantity for _, line in lines],
        },
    )
