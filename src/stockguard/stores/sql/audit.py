"""Checks invariants I1-I4 straight from the tables, trusting no engine answer.

Used by the tests after every concurrent run and by ``stockguard bench`` after every
workload: a strategy's own view of what it did is exactly what must not be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from stockguard.domain import Status
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


async def audit(store: SqlStore) -> AuditReport:
    report = AuditReport()
    async with store.transaction(read_only=True) as tx:
        c = tx.connection
        levels = {r.sku: r for r in await c.execute(select(t.stock_levels))}
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
    report.skus = len(levels)
    for sku, row in sorted(levels.items()):
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
