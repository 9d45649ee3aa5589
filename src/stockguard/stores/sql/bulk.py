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
from typing import Any

from sqlalchemy import Row, select, text

from stockguard.domain import Line, Movement, Reservation, Status
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
    return {r.order_id: r for r in await reservations_from_rows(tx, rows)}


_BY_ID_LOCKED_PG = text(
    "SELECT r.* FROM unnest(CAST(:ids AS varchar[])) AS wanted(id) "
    "JOIN reservations AS r ON r.id = wanted.id ORDER BY r.id FOR UPDATE OF r"
)
_LINES_PG = text(
    "SELECT l.reservation_id, l.sku, l.quantity "
    "FROM unnest(CAST(:ids AS varchar[])) AS wanted(id) "
    "JOIN reservation_lines AS l ON l.reservation_id = wanted.id"
)


async def reservations_by_id(
    tx: Tx, reservation_ids: Sequence[str], *, lock: bool = False
) -> dict[str, Reservation]:
    """Reservations by id; with ``lock`` their rows are locked in id order.

    On PostgreSQL with ``lock``, one statement whatever the count (an ``unnest`` join, as
    in ``reservations_by_order``); elsewhere one statement per ``IN_CLAUSE_MAX`` ids.
    """
    found: dict[str, Reservation] = {}
    unique = sorted(set(reservation_ids))
    if lock and tx.backend.name == "postgres" and unique:
        assert len(unique) <= ORDER_IDS_MAX
        rows = (await tx.connection.execute(_BY_ID_LOCKED_PG, {"ids": unique})).all()
        return {r.id: r for r in await reservations_from_rows(tx, rows)}
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


async def reservations_from_rows(tx: Tx, rows: Sequence[Row[Any]]) -> list[Reservation]:
    """``Tx.reservations_from_rows`` with the lines read in one statement on PostgreSQL
    (an ``IN`` list of hundreds of ids is rendered and sent anew for every batch)."""
    if tx.backend.name != "postgres" or not rows:
        return await tx.reservations_from_rows(rows)
    lines: dict[str, list[Line]] = {row.id: [] for row in rows}
    for line in await tx.connection.execute(_LINES_PG, {"ids": list(lines)}):
        lines[line.reservation_id].append(Line(line.sku, line.quantity))
    return [tx.reservation_of(row, lines[row.id]) for row in rows]


_END_PG = text(
    "UPDATE reservations AS r SET status = ended.status, ended_at_ms = :now_ms "
    "FROM unnest(CAST(:ids AS varchar[]), CAST(:statuses AS varchar[])) "
    "AS ended(id, status) WHERE r.id = ended.id AND r.status = :held"
)


async def end_reservations(tx: Tx, ended: Mapping[str, Status], now_ms: int) -> int:
    """held → its terminal status for every id of ``ended``, conditional on still being
    held (I4); returns how many rows changed. One statement on PostgreSQL whatever the
    mix of statuses; elsewhere ``Tx.end_reservations`` once per status."""
    if not ended:
        return 0
    assert all(status.is_terminal for status in ended.values())
    if tx.backend.name != "postgres":
        by_status: dict[Status, list[str]] = {}
        for reservation_id, status in ended.items():
            by_status.setdefault(status, []).append(reservation_id)
        return sum(
            [await tx.end_reservations(ids, status, now_ms) for status, ids in by_status.items()]
        )
    ids = sorted(ended)
    result = await tx.connection.execute(
        _END_PG,
        {
            "ids": ids,
            "statuses": [ended[reservation_id].value for reservation_id in ids],
            "now_ms": now_ms,
            "held": Status.HELD.value,
        },
    )
    return int(result.rowcount)


_INSERT_MOVEMENTS_PG = text(
    "INSERT INTO stock_movements (sku, at_ms, delta, on_hand_after, reason, reservation_id) "
    "SELECT * FROM unnest(CAST(:sku AS varchar[]), CAST(:at_ms AS bigint[]), "
    "CAST(:delta AS bigint[]), CAST(:on_hand_after AS bigint[]), CAST(:reason AS varchar[]), "
    "CAST(:reservation_id AS varchar[]))"
)


async def record_movements(tx: Tx, movements: Sequence[Movement]) -> None:
    """``Tx.record_movements`` in one ``INSERT … SELECT FROM unnest(arrays)`` on PostgreSQL
    (a confirm batch writes one ledger row per sold line: hundreds per batch)."""
    kept = [m for m in movements if m.delta != 0]
    if tx.backend.name != "postgres" or not kept:
        await tx.record_movements(kept)
        return
    await tx.connection.execute(
        _INSERT_MOVEMENTS_PG,
        {
            "sku": [m.sku for m in kept],
            "at_ms": [m.at_ms for m in kept],
            "delta": [m.delta for m in kept],
            "on_hand_after": [m.on_hand_after for m in kept],
            "reason": [m.reason for m in kept],
            "reservation_id": [m.reservation_id for m in kept],
        },
    )


_MOVE_LEVELS_PG = text(
    "UPDATE stock_levels AS s SET on_hand = s.on_hand + d.on_hand, "
    "reserved = s.reserved + d.reserved, version = s.version + 1, updated_at_ms = :now_ms "
    "FROM unnest(CAST(:sku AS varchar[]), CAST(:on_hand AS bigint[]), "
    "CAST(:reserved AS bigint[])) AS d(sku, on_hand, reserved) "
    "WHERE s.sku = d.sku"
)
_MOVE_LEVEL = text(
    "UPDATE stock_levels SET on_hand = on_hand + :on_hand, reserved = reserved + :reserved, "
    "version = version + 1, updated_at_ms = :now_ms WHERE sku = :sku"
)


async def move_levels(tx: Tx, deltas: Mapping[str, tuple[int, int]], now_ms: int) -> None:
    """Moves (on_hand, reserved) of stock_levels rows by a signed amount per SKU.

    The caller has locked the rows already (``Tx.levels(…, lock=True)``, SKU order): the
    statements below may touch them in any order. One statement per batch, however many
    SKUs and reservations the amounts add up: on PostgreSQL an ``UPDATE … FROM
    unnest(arrays)``, elsewhere one prepared ``UPDATE`` run as an executemany. A batch of a
    mixed workload moves ~20-70 SKUs; one Core ``UPDATE`` per SKU cost a round trip and
    ~0.3 ms of SQLAlchemy expression building each, all of it while the batch held the
    hottest rows of the shop (see docs/benchmarks.md#mixed-workload-coalescing-vs-redis).
    """
    rows = [
        {"sku": sku, "on_hand": on_hand, "reserved": reserved, "now_ms": now_ms}
        for sku, (on_hand, reserved) in sorted(deltas.items())
        if on_hand or reserved
    ]
    if not rows:
        return
    if tx.backend.name == "postgres":
        await tx.connection.execute(
            _MOVE_LEVELS_PG,
            {
                "sku": [row["sku"] for row in rows],
                "on_hand": [row["on_hand"] for row in rows],
                "reserved": [row["reserved"] for row in rows],
                "now_ms": now_ms,
            },
        )
    elif len(rows) == 1:
        await tx.connection.execute(_MOVE_LEVEL, rows[0])
    else:
        await tx.connection.execute(_MOVE_LEVEL, rows)


async def add_reserved(tx: Tx, deltas: Mapping[str, int], now_ms: int) -> None:
    """``move_levels`` for ``reserved`` alone (holds, releases, expiries); rows locked."""
    await move_levels(tx, {sku: (0, delta) for sku, delta in deltas.items()}, now_ms)


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
