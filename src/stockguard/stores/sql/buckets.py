"""Statements on stock buckets, for the sharded strategy: one function per statement.

A SKU's stock is its ``stock_levels`` row plus the sum of its ``stock_buckets`` rows
(see ``schema.stock_buckets``). Rows are always locked in (sku, bucket) order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update

from stockguard.domain import StockLevel
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.tx import IN_CLAUSE_MAX, Tx


@dataclass(frozen=True, slots=True)
class Bucket:
    sku: str
    bucket: int
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True, slots=True)
class Part:
    """The units a held line took from one bucket."""

    reservation_id: str
    sku: str
    bucket: int
    quantity: int


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), IN_CLAUSE_MAX):
        yield items[start : start + IN_CLAUSE_MAX]


async def buckets(tx: Tx, skus: Sequence[str], *, lock: bool = False) -> dict[str, list[Bucket]]:
    """The buckets of ``skus`` in bucket order; with ``lock`` row-locked in that order."""
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    found: dict[str, list[Bucket]] = {}
    b = t.stock_buckets.c
    for chunk in _chunks(sorted(set(skus))):
        query = (
            select(b.sku, b.bucket, b.on_hand, b.reserved)
            .where(b.sku.in_(chunk))
            .order_by(b.sku, b.bucket)
        )
        if lock and tx.backend.row_locks:
            query = query.with_for_update()
        for row in await tx.connection.execute(query):
            found.setdefault(row.sku, []).append(
                Bucket(row.sku, row.bucket, row.on_hand, row.reserved)
            )
    return found


async def sellable(tx: Tx, skus: Sequence[str]) -> dict[str, int]:
    """What each SKU of ``skus`` that has buckets may still hold, read without locks, in
    one statement: its buckets' free units, plus, where the SKU has a backorder
    allowance, what its row may still hold on it (docs/design.md#backorders: the buckets
    carry the shelf, the row carries the allowance). The sold-out answer of a flash sale
    is told from this, so it stays one round trip."""
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    b, s = t.stock_buckets.c, t.stock_levels.c
    on_row = s.on_hand + s.backorder_max - s.reserved - s.safety_stock
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(skus))):
        rows = await tx.connection.execute(
            select(b.sku, func.sum(b.on_hand - b.reserved), s.backorder_max, on_row)
            .join(t.stock_levels, s.sku == b.sku)
            .where(b.sku.in_(chunk))
            .group_by(b.sku, s.backorder_max, on_row)
        )
        for sku, free, backorder_max, row_free in rows:
            found[sku] = int(free) + (max(int(row_free), 0) if backorder_max else 0)
    return found


async def totals(tx: Tx, skus: Sequence[str]) -> dict[str, StockLevel]:
    """Each existing SKU's whole stock: its stock_levels row plus the sum of its buckets.

    ``version`` is the row's version plus the buckets' versions, so it grows with every
    change of either.
    """
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    levels = await tx.levels(skus)
    b = t.stock_buckets.c
    for chunk in _chunks(sorted(levels)):
        rows = await tx.connection.execute(
            select(b.sku, func.sum(b.on_hand), func.sum(b.reserved), func.sum(b.version))
            .where(b.sku.in_(chunk))
            .group_by(b.sku)
        )
        for sku, on_hand, reserved, version in rows:
            level = levels[sku]
            levels[sku] = dataclasses.replace(
                level,
                on_hand=level.on_hand + int(on_hand),
                reserved=level.reserved + int(reserved),
                version=level.version + int(version),
            )
    return levels


async def take_if_available(tx: Tx, sku: str, bucket: int, quantity: int) -> bool:
    """Holds ``quantity`` from one bucket only if that bucket has it (docs/design.md#sharded)."""
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    b = t.stock_buckets.c
    result = await tx.connection.execute(
        update(t.stock_buckets)
        .where(b.sku == sku, b.bucket == bucket, b.on_hand - b.reserved >= quantity)
        .values(reserved=b.reserved + quantity, version=b.version + 1)
    )
    return result.rowcount == 1


async def insert_buckets(tx: Tx, rows: Sequence[Bucket]) -> None:
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    if rows:
        await tx.connection.execute(
            insert(t.stock_buckets),
            [
                {
                    "sku": r.sku,
                    "bucket": r.bucket,
                    "on_hand": r.on_hand,
                    "reserved": r.reserved,
                    "version": 0,
                }
                for r in rows
            ],
        )


async def write(tx: Tx, rows: Sequence[Bucket]) -> None:
    """Absolute on_hand and reserved for buckets the transaction has locked."""
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    b = t.stock_buckets.c
    for row in sorted(rows, key=lambda r: (r.sku, r.bucket)):
        await tx.connection.execute(
            update(t.stock_buckets)
            .where(b.sku == row.sku, b.bucket == row.bucket)
            .values(on_hand=row.on_hand, reserved=row.reserved, version=b.version + 1)
        )


async def add(tx: Tx, deltas: Mapping[tuple[str, int], tuple[int, int]]) -> None:
    """Moves (on_hand, reserved) of each (sku, bucket) by a signed amount, in key order."""
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    b = t.stock_buckets.c
    for (sku, bucket), (on_hand, reserved) in sorted(deltas.items()):
        if on_hand == 0 and reserved == 0:
            continue
        await tx.connection.execute(
            update(t.stock_buckets)
            .where(b.sku == sku, b.bucket == bucket)
            .values(
                on_hand=b.on_hand + on_hand,
                reserved=b.reserved + reserved,
                version=b.version + 1,
            )
        )


async def record_parts(tx: Tx, parts: Sequence[Part]) -> None:
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    if parts:
        await tx.connection.execute(
            insert(t.reservation_buckets),
            [
                {
                    "reservation_id": p.reservation_id,
                    "sku": p.sku,
                    "bucket": p.bucket,
                    "quantity": p.quantity,
                }
                for p in parts
            ],
        )


async def parts_of(tx: Tx, reservation_ids: Sequence[str]) -> list[Part]:
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    r = t.reservation_buckets.c
    found: list[Part] = []
    for chunk in _chunks(list(reservation_ids)):
        for row in await tx.connection.execute(
            select(r.reservation_id, r.sku, r.bucket, r.quantity).where(r.reservation_id.in_(chunk))
        ):
            found.append(Part(row.reservation_id, row.sku, row.bucket, row.quantity))
    return found


async def shrink_parts(tx: Tx, parts: Sequence[Part]) -> None:
    """Writes what is left of each part after a partial release; a part left with 0
    units is deleted (the schema has no 0-unit part)."""
    r = t.reservation_buckets.c
    for part in sorted(parts, key=lambda p: (p.sku, p.bucket)):
        where = (
            r.reservation_id == part.reservation_id,
            r.sku == part.sku,
            r.bucket == part.bucket,
        )
        if part.quantity > 0:
            await tx.connection.execute(
                update(t.reservation_buckets).where(*where).values(quantity=part.quantity)
            )
        else:
            await tx.connection.execute(delete(t.reservation_buckets).where(*where))


async def lock_levels(tx: Tx, skus: Sequence[str]) -> None:
    """Locks stock_levels rows by writing them (PostgreSQL: FOR NO KEY UPDATE, which lets
    concurrent reservations still insert lines that reference the SKU)."""
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    s = t.stock_levels.c
    for sku in sorted(set(skus)):
        await tx.connection.execute(
            update(t.stock_levels).where(s.sku == sku).values(version=s.version + 1)
        )


async def bucket_counts(tx: Tx, skus: Sequence[str]) -> dict[str, int]:
    """How many buckets each of ``skus`` has; SKUs without buckets are left out."""
    tx.sharded = True  # events read this SKU's levels as row plus buckets
    c = t.stock_buckets.c
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(set(skus))):
        rows = await tx.connection.execute(
            select(c.sku, func.count()).where(c.sku.in_(chunk)).group_by(c.sku)
        )
        found.update((sku, int(count)) for sku, count in rows)
    return found


# ---------------------------------------------------------------------------- pure arithmetic


def spread(rows: Sequence[Bucket], on_hand_total: int) -> list[Bucket]:
    """The same buckets holding ``on_hand_total``, available split as evenly as possible.

    Each bucket keeps what it has reserved; only unreserved units move.
    """
    available = on_hand_total - sum(row.reserved for row in rows)
    assert rows, "a sharded SKU has at least one bucket"
    assert available >= 0, "on_hand never drops below reserved"
    share, extra = divmod(available, len(rows))
    return [
        Bucket(row.sku, row.bucket, row.reserved + share + (1 if n < extra else 0), row.reserved)
        for n, row in enumerate(rows)
    ]


def take_back(parts: Sequence[Part], quantity: int) -> list[tuple[Part, int]]:
    """(part, units) to give back ``quantity`` of one line, from its last bucket down;
    what the parts do not cover was held on the SKU's row and is the caller's."""
    plan: list[tuple[Part, int]] = []
    left = quantity
    for part in sorted(parts, key=lambda p: p.bucket, reverse=True):
        if left == 0:
            break
        units = min(part.quantity, left)
        plan.append((part, units))
        left -= units
    return plan


def fill(
    rows: Sequence[Bucket], quantity: int, *, partial: bool = False
) -> list[tuple[int, int]] | None:
    """(bucket, units) taken in bucket order to fill ``quantity``; None if the sum is short
    (with ``partial``: what the buckets have, the caller holds the rest elsewhere)."""
    plan: list[tuple[int, int]] = []
    left = quantity
    for row in rows:
        if left == 0:
            break
        units = min(row.available, left)
        if units > 0:
            plan.append((row.bucket, units))
            left -= units
    return plan if left == 0 or partial else None


async def fold(tx: Tx, sku: str, now_ms: int) -> None:
    """Moves a SKU's buckets back into its row, for good (docs/locations.md): the row takes
    their on_hand and reserved, and the held lines' bucket records go, so each such line
    is then held on the row, which is what a line without records means. The buckets are
    locked first, then the row (the order of every sharded writer); I1 holds on the row
    because it held on every bucket."""
    rows = (await buckets(tx, [sku], lock=True)).get(sku, [])
    await tx.levels([sku], lock=True)
    if not rows:
        return
    await tx.move_levels(
        {sku: (sum(r.on_hand for r in rows), sum(r.reserved for r in rows))}, now_ms
    )
    await tx.connection.execute(
        delete(t.reservation_buckets).where(t.reservation_buckets.c.sku == sku)
    )
    await tx.connection.execute(delete(t.stock_buckets).where(t.stock_buckets.c.sku == sku))
