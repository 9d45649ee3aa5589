"""The events outbox on SQL (docs/events.md#the-outbox): sequencing, reading, pruning.

Transactions insert events with ``row_id`` (insert order) only; ``sequence`` then gives
rows their public id ``seq`` in ``row_id`` order. It runs in one place per database (the
relay holds a lease), and only ever numbers rows it can see, i.e. committed ones, so a
reader paging by ``seq`` can never skip a row that commits late: that row simply gets a
later ``seq``. Events of one SKU keep their commit order because both transactions lock
the SKU's row before inserting their events: the second's row_id is larger and its row
is not visible before the first's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import msgspec
from sqlalchemy import bindparam, delete, func, select, update

from stockguard import domain
from stockguard.domain.events import Event, EventType, StoredEvent
from stockguard.stores.sql import schema as t

if TYPE_CHECKING:
    from stockguard.stores.sql.store import SqlStore
    from stockguard.stores.sql.tx import Tx

SEQUENCE_BATCH_MAX = 5_000
"""Rows one sequencing transaction numbers: bounded, so it never holds locks for long."""

_c = t.stock_events.c
_DECODE = msgspec.json.Decoder()


async def sequence(
    store: SqlStore,
    limit: int = SEQUENCE_BATCH_MAX,
    fence: Callable[[Tx], Awaitable[None]] | None = None,
) -> int:
    """Numbers up to ``limit`` committed, unnumbered rows; returns how many.

    ``fence``: run first in the same transaction (the relay's lease check,
    ``events/lease.py``); it raises to write nothing when this process may not number."""
    assert 1 <= limit <= SEQUENCE_BATCH_MAX

    async def work() -> int:
        async with store.transaction() as tx:
            if fence is not None:
                await fence(tx)
            rows = (
                (
                    await tx.connection.execute(
                        select(_c.row_id).where(_c.seq.is_(None)).order_by(_c.row_id).limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                return 0
            top = (await tx.connection.execute(select(func.max(_c.seq)))).scalar()
            start = int(top or 0) + 1
            await tx.connection.execute(
                update(t.stock_events)
                .where(_c.row_id == bindparam("rid"))
                .values(seq=bindparam("new_seq"))
                .execution_options(synchronize_session=False),
                [{"rid": rid, "new_seq": start + i} for i, rid in enumerate(rows)],
            )
            await tx.commit()
            return len(rows)

    return await store.run(work)


async def events_after(
    store: SqlStore, after: int, limit: int, types: frozenset[EventType] | None = None
) -> list[StoredEvent]:
    """Numbered events with ``seq > after`` in ``seq`` order, of ``types`` if given."""
    query = select(_c.seq, _c.type, _c.sku, _c.reservation_id, _c.at_ms, _c.payload).where(
        _c.seq > after
    )
    if types is not None:
        query = query.where(_c.type.in_(sorted(t.value for t in types)))
    query = query.order_by(_c.seq).limit(limit)
    async with store.transaction(read_only=True) as tx:
        rows = (await tx.connection.execute(query)).all()
    return [
        StoredEvent(
            int(row.seq),
            Event(
                EventType(row.type),
                row.at_ms,
                row.sku,
                row.reservation_id,
                _DECODE.decode(row.payload),
            ),
        )
        for row in rows
    ]


async def unsequenced(store: SqlStore) -> tuple[int, int | None]:
    """(rows without a seq, the oldest one's ``at_ms``): the outbox lag before the relay."""
    async with store.transaction(read_only=True) as tx:
        row = (
            await tx.connection.execute(
                select(func.count(), func.min(_c.at_ms)).where(_c.seq.is_(None))
            )
        ).one()
    return int(row[0]), (None if row[1] is None else int(row[1]))


async def last_seq(store: SqlStore) -> int:
    async with store.transaction(read_only=True) as tx:
        return int((await tx.connection.execute(select(func.max(_c.seq)))).scalar() or 0)


async def prune(store: SqlStore, *, up_to_seq: int, before_at_ms: int, limit: int = 10_000) -> int:
    """Deletes numbered events at or below ``up_to_seq`` (every sink is past them) that are
    older than ``before_at_ms``; bounded per call. Returns how many went."""
    async with store.transaction() as tx:
        doomed: Sequence[int] = (
            (
                await tx.connection.execute(
                    select(_c.row_id)
                    .where(_c.seq <= up_to_seq, _c.at_ms < before_at_ms)
                    .order_by(_c.seq)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        if doomed:
            await tx.connection.execute(delete(t.stock_events).where(_c.row_id.in_(doomed)))
        await tx.commit()
    return len(doomed)


async def set_low_stock_threshold(store: SqlStore, sku: str, threshold: int | None) -> None:
    async with store.transaction() as tx:
        result = await tx.connection.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == sku)
            .values(low_stock_threshold=threshold)
        )
        if result.rowcount != 1:
            raise domain.UnknownSku([sku])
        await tx.commit()


async def low_stock_threshold(store: SqlStore, sku: str) -> int | None:
    async with store.transaction(read_only=True) as tx:
        row = (
            await tx.connection.execute(
                select(t.stock_levels.c.low_stock_threshold).where(t.stock_levels.c.sku == sku)
            )
        ).first()
    if row is None:
        raise domain.UnknownSku([sku])
    return None if row[0] is None else int(row[0])
