"""Checks invariants I1-I4 straight from the tables, trusting no engine answer.

Used by the tests after every concurrent run and by ``stockguard bench`` after every
workload: a strategy's own view of what it did is exactly what must not be trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stockguard.domain import Status
from stockguard.stores.contract import Store
from stockguard.stores.memory import MemoryStore
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.store import SqlStore


@dataclass
class AuditReport:
    skus: int = 0
    violations: list[str] = field(default_factory=list)
    oversold_units: int = 0
    """Units held or sold beyond on_hand, summed over SKUs (I1); must be 0."""

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True, slots=True)
class Totals:
    on_hand: int
    reserved: int


async def stock_totals(
    connection: AsyncConnection, skus: Sequence[str] | None = None
) -> dict[str, Totals]:
    """Each SKU's whole stock from the tables: its stock_levels row plus its buckets.

    A SKU the sharded strategy has split keeps most of its stock in ``stock_buckets``;
    for every other SKU the bucket sum is zero and this is the stock_levels row.
    """
    levels = select(t.stock_levels.c.sku, t.stock_levels.c.on_hand, t.stock_levels.c.reserved)
    bucket = t.stock_buckets.c
    sums = select(bucket.sku, func.sum(bucket.on_hand), func.sum(bucket.reserved)).group_by(
        bucket.sku
    )
    if skus is not None:
        levels = levels.where(t.stock_levels.c.sku.in_(skus))
        sums = sums.where(bucket.sku.in_(skus))
    totals = {
        r.sku: Totals(int(r.on_hand), int(r.reserved)) for r in await connection.execute(levels)
    }
    for sku, on_hand, reserved in await connection.execute(sums):
        row = totals.get(sku, Totals(0, 0))
        totals[sku] = Totals(row.on_hand + int(on_hand), row.reserved + int(reserved))
    return totals


async def _bucket_violations(connection: AsyncConnection) -> list[str]:
    """Per bucket: I1 holds, and reserved equals the units held lines took from it (I2)."""
    rb = t.reservation_buckets.c
    held = {
        (sku, bucket): int(total)
        for sku, bucket, total in await connection.execute(
            select(rb.sku, rb.bucket, func.sum(rb.quantity))
            .join(t.reservations, t.reservations.c.id == rb.reservation_id)
            .where(t.reservations.c.status == Status.HELD.value)
            .group_by(rb.sku, rb.bucket)
        )
    }
    violations = []
    for row in await connection.execute(select(t.stock_buckets)):
        if not 0 <= row.reserved <= row.on_hand:
            violations.append(
                f"I1 {row.sku}#{row.bucket}: reserved {row.reserved}, on_hand {row.on_hand}"
            )
        if held.get((row.sku, row.bucket), 0) != row.reserved:
            violations.append(
                f"I2 {row.sku}#{row.bucket}: reserved {row.reserved}, "
                f"held parts sum to {held.get((row.sku, row.bucket), 0)}"
            )
    return violations


async def audit(store: Store) -> AuditReport:
    """Checks I1-I4 on the tables of ``store`` (a ``MemoryStore`` gives its sums)."""
    if isinstance(store, MemoryStore):
        return judge(*store.audit_sums())
    assert isinstance(store, SqlStore)
    async with store.transaction(read_only=True, snapshot=True) as tx:
        c = tx.connection
        levels = await stock_totals(c)
        bucket_violations = await _bucket_violations(c)
        held: dict[str, int] = dict(
            (
                await c.execute(
                    select(t.reservation_lines.c.sku, func.sum(t.reservation_lines.c.quantity))
                    .join(
                        t.reservations, t.reservations.c.id == t.reservation_lines.c.reservation_id
                    )
                    .where(t.reservations.c.status == Status.HELD.value)
                    .group_by(t.reservation_lines.c.sku)
                )
            ).all()
        )
        ledger: dict[str, int] = dict(
            (
                await c.execute(
                    select(t.stock_movements.c.sku, func.sum(t.stock_movements.c.delta)).group_by(
                        t.stock_movements.c.sku
                    )
                )
            ).all()
        )
        sold_lines: dict[str, int] = dict(
            (
                await c.execute(
                    select(t.reservation_lines.c.sku, func.sum(t.reservation_lines.c.quantity))
                    .join(
                        t.reservations, t.reservations.c.id == t.reservation_lines.c.reservation_id
                    )
                    .where(t.reservations.c.status == Status.CONFIRMED.value)
                    .group_by(t.reservation_lines.c.sku)
                )
            ).all()
        )
        sales: dict[str, int] = dict(
            (
                await c.execute(
                    select(t.stock_movements.c.sku, -func.sum(t.stock_movements.c.delta))
                    .where(t.stock_movements.c.reason == "sale")
                    .group_by(t.stock_movements.c.sku)
                )
            ).all()
        )
    totals = {sku: (row.on_hand, row.reserved) for sku, row in levels.items()}
    report = judge(totals, held, ledger, sold_lines, sales)
    report.violations[:0] = bucket_violations
    return report


def judge(
    levels: Mapping[str, tuple[int, int]],
    held: Mapping[str, int],
    ledger: Mapping[str, int],
    sold_lines: Mapping[str, int],
    sales: Mapping[str, int],
) -> AuditReport:
    """I1-I4 from the sums every store can give: (on_hand, reserved) per SKU, held lines,
    the ledger, confirmed lines and sales per SKU (``MemoryStore.audit_sums`` too)."""
    report = AuditReport()
    report.skus = len(levels)
    for sku, (on_hand, reserved) in sorted(levels.items()):
        row = Totals(on_hand, reserved)
        if row.reserved < 0 or row.reserved > row.on_hand:
            report.violations.append(f"I1 {sku}: reserved {row.reserved}, on_hand {row.on_hand}")
            report.oversold_units += max(row.reserved - row.on_hand, 0)
        if row.on_hand < 0:
            report.oversold_units += -row.on_hand
        if int(held.get(sku) or 0) != row.reserved:
            report.violations.append(
                f"I2 {sku}: reserved {row.reserved}, held lines sum to {held.get(sku) or 0}"
            )
        if int(ledger.get(sku) or 0) != row.on_hand:
            report.violations.append(
                f"I3 {sku}: on_hand {row.on_hand}, ledger sums to {ledger.get(sku) or 0}"
            )
        if int(sold_lines.get(sku) or 0) != int(sales.get(sku) or 0):
            report.violations.append(
                f"I4 {sku}: confirmed lines {sold_lines.get(sku) or 0}, sales {sales.get(sku) or 0}"
            )
    return report
