"""Checks invariants I1-I4 straight from the tables, trusting no engine answer.

Used by the tests after every concurrent run and by ``stockguard bench`` after every
workload: a strategy's own view of what it did is exactly what must not be trusted.

Per location too (docs/locations.md#invariants): a SKU's row (plus its buckets) is its
level at the default location, so its ``reserved`` is what held lines hold there
(unallocated lines and allocations at ``default``) and its ``on_hand`` follows the
movements there; every level at another location has I1, I2 against the held
allocations at it and I3 against the movements naming it; and a held located line's
allocations sum to the line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stockguard.domain import DEFAULT_LOCATION_CODE, Status
from stockguard.stores.contract import Store
from stockguard.stores.memory import MemoryStore
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.store import SqlStore


@dataclass
class AuditReport:
    skus: int = 0
    violations: list[str] = field(default_factory=list)
    oversold_units: int = 0
    """Units held or sold beyond on_hand and the shop's backorder allowance, summed over
    SKUs (I1); must be 0."""

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


async def _held_by_location(connection: AsyncConnection) -> dict[tuple[str, str], int]:
    """Units held lines hold per (sku, location): an unallocated line at the default
    location, a located line at each of its allocations."""
    ln, ra, r = t.reservation_lines.c, t.reservation_allocations.c, t.reservations.c
    held: dict[tuple[str, str], int] = {}
    for sku, total in await connection.execute(
        select(ln.sku, func.sum(ln.quantity))
        .join(t.reservations, r.id == ln.reservation_id)
        .where(r.status == Status.HELD.value, ln.allocated == False)  # noqa: E712 (SQL)
        .group_by(ln.sku)
    ):
        held[(str(sku), DEFAULT_LOCATION_CODE)] = int(total)
    for sku, location, total in await connection.execute(
        select(ra.sku, ra.location, func.sum(ra.quantity))
        .join(t.reservations, r.id == ra.reservation_id)
        .where(r.status == Status.HELD.value)
        .group_by(ra.sku, ra.location)
    ):
        key = (str(sku), str(location))
        held[key] = held.get(key, 0) + int(total)
    return held


async def _uneven_lines(connection: AsyncConnection) -> list[tuple[str, str, int, int]]:
    """Held lines whose allocations do not sum to them (an ``allocated`` line to its
    quantity, any other to 0): (reservation id, sku, what they should sum to, sum)."""
    ln, ra, r = t.reservation_lines.c, t.reservation_allocations.c, t.reservations.c
    drawn = func.coalesce(func.sum(ra.quantity), 0)
    expected = case((ln.allocated == True, ln.quantity), else_=0)  # noqa: E712 (SQL)
    rows = await connection.execute(
        select(ln.reservation_id, ln.sku, expected, drawn)
        .select_from(
            t.reservation_lines.join(t.reservations, r.id == ln.reservation_id).outerjoin(
                t.reservation_allocations,
                (ra.reservation_id == ln.reservation_id) & (ra.sku == ln.sku),
            )
        )
        .where(r.status == Status.HELD.value)
        .group_by(ln.reservation_id, ln.sku, ln.quantity, ln.allocated)
        .having(drawn != expected)
        .order_by(ln.reservation_id, ln.sku)
    )
    return [(str(rid), str(sku), int(want), int(got)) for rid, sku, want, got in rows]


async def _location_sums(
    connection: AsyncConnection,
) -> tuple[dict[tuple[str, str], tuple[int, int, int]], dict[tuple[str, str], int]]:
    """Every level at another location (on_hand, reserved, backorder_max), and the
    ledger per (sku, location) of the movements at other locations."""
    lv, m = t.location_levels.c, t.stock_movements.c
    levels = {
        (str(row.sku), str(row.location)): (
            int(row.on_hand),
            int(row.reserved),
            int(row.backorder_max),
        )
        for row in await connection.execute(
            select(lv.sku, lv.location, lv.on_hand, lv.reserved, lv.backorder_max)
        )
    }
    ledger = {
        (str(sku), str(location)): int(total)
        for sku, location, total in await connection.execute(
            select(m.sku, m.location, func.sum(m.delta))
            .where(m.location != DEFAULT_LOCATION_CODE)
            .group_by(m.sku, m.location)
        )
    }
    return levels, ledger


async def audit(store: Store) -> AuditReport:
    """Checks I1-I4 on the tables of ``store`` (a ``MemoryStore`` gives its sums)."""
    if isinstance(store, MemoryStore):
        report = judge(*store.audit_sums(), store.backorder_allowances())
        report.violations += cap_violations(*store.audit_caps())
        judge_locations(report, *store.audit_locations())
        return report
    assert isinstance(store, SqlStore)
    async with store.transaction(read_only=True, snapshot=True) as tx:
        c = tx.connection
        levels = await stock_totals(c)
        bucket_violations = await _bucket_violations(c)
        by_location = await _held_by_location(c)
        held = {
            sku: units
            for (sku, code), units in by_location.items()
            if code == DEFAULT_LOCATION_CODE
        }
        held_elsewhere = {
            key: units for key, units in by_location.items() if key[1] != DEFAULT_LOCATION_CODE
        }
        uneven = await _uneven_lines(c)
        location_levels, location_ledger = await _location_sums(c)
        ledger: dict[str, int] = dict(
            (
                await c.execute(
                    select(t.stock_movements.c.sku, func.sum(t.stock_movements.c.delta))
                    .where(t.stock_movements.c.location == DEFAULT_LOCATION_CODE)
                    .group_by(t.stock_movements.c.sku)
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
        caps, units = await _caps(c)
        sales: dict[str, int] = dict(
            (
                await c.execute(
                    select(t.stock_movements.c.sku, -func.sum(t.stock_movements.c.delta))
                    .where(t.stock_movements.c.reason == "sale")
                    .group_by(t.stock_movements.c.sku)
                )
            ).all()
        )
        allowances = {
            str(sku): int(units)
            for sku, units in await c.execute(
                select(t.stock_levels.c.sku, t.stock_levels.c.backorder_max).where(
                    t.stock_levels.c.backorder_max > 0
                )
            )
        }
    totals = {sku: (row.on_hand, row.reserved) for sku, row in levels.items()}
    report = judge(totals, held, ledger, sold_lines, sales, allowances)
    report.violations[:0] = bucket_violations
    report.violations += cap_violations(caps, units)
    judge_locations(report, location_levels, held_elsewhere, location_ledger, uneven)
    return report


async def _caps(
    connection: AsyncConnection,
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Each capped SKU's ``customer_max`` and every customer's held + confirmed units of
    it, read from the reservations themselves (docs/design.md#per-customer-caps)."""
    c = t.stock_levels.c
    caps = {
        str(sku): int(cap)
        for sku, cap in await connection.execute(
            select(c.sku, c.customer_max).where(c.customer_max.is_not(None))
        )
    }
    if not caps:
        return caps, {}
    r, ln = t.reservations.c, t.reservation_lines.c
    units = {
        (str(customer), str(sku)): int(total)
        for customer, sku, total in await connection.execute(
            select(r.customer_id, ln.sku, func.sum(ln.quantity))
            .select_from(t.reservations.join(t.reservation_lines, ln.reservation_id == r.id))
            .where(
                ln.sku.in_(sorted(caps)),
                r.customer_id.is_not(None),
                r.status.in_([Status.HELD.value, Status.CONFIRMED.value]),
            )
            .group_by(r.customer_id, ln.sku)
        )
    }
    return caps, units


def cap_violations(caps: Mapping[str, int], units: Mapping[tuple[str, str], int]) -> list[str]:
    """I6: no customer holds and bought more of a capped SKU than its ``customer_max``.
    (Lowering a cap below what a customer already has is reported too: the tables then
    break the policy the shop states, which an admin should see.)"""
    return [
        f"I6 {sku}: customer {customer!r} holds or bought {total}, customer_max {caps[sku]}"
        for (customer, sku), total in sorted(units.items())
        if sku in caps and total > caps[sku]
    ]


def judge(
    levels: Mapping[str, tuple[int, int]],
    held: Mapping[str, int],
    ledger: Mapping[str, int],
    sold_lines: Mapping[str, int],
    sales: Mapping[str, int],
    backorder_max: Mapping[str, int] | None = None,
) -> AuditReport:
    """I1-I4 from the sums every store can give: (on_hand, reserved) per SKU, held lines,
    the ledger, confirmed lines and sales per SKU (``MemoryStore.audit_sums`` too), and
    the SKUs with a backorder allowance: I1 is ``reserved <= on_hand + backorder_max``,
    and on_hand may be negative by no more than it (docs/design.md#backorders)."""
    report = AuditReport()
    report.skus = len(levels)
    allowances = backorder_max or {}
    for sku, (on_hand, reserved) in sorted(levels.items()):
        row = Totals(on_hand, reserved)
        allowed = allowances.get(sku, 0)
        if row.reserved < 0 or row.reserved > row.on_hand + allowed:
            report.violations.append(
                f"I1 {sku}: reserved {row.reserved}, on_hand {row.on_hand}"
                + (f", backorder_max {allowed}" if allowed else "")
            )
            report.oversold_units += max(row.reserved - row.on_hand - allowed, 0)
        if row.on_hand < -allowed:
            report.oversold_units += -allowed - row.on_hand
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


def judge_locations(
    report: AuditReport,
    levels: Mapping[tuple[str, str], tuple[int, int, int]],
    held: Mapping[tuple[str, str], int],
    ledger: Mapping[tuple[str, str], int],
    uneven: Sequence[tuple[str, str, int, int]] = (),
) -> None:
    """I1-I3 per level at a location other than the default one, added to ``report``:
    ``levels`` (sku, location) -> (on_hand, reserved, backorder_max); ``held`` the held
    allocations there; ``ledger`` the movements there; ``uneven`` the held lines whose
    allocations do not sum to them (docs/locations.md#invariants). Units held or moved at
    a (sku, location) with no level are reported too: they point nowhere."""
    for (sku, location), (on_hand, reserved, allowed) in sorted(levels.items()):
        where = f"{sku}@{location}"
        if reserved < 0 or reserved > on_hand + allowed:
            report.violations.append(
                f"I1 {where}: reserved {reserved}, on_hand {on_hand}"
                + (f", backorder_max {allowed}" if allowed else "")
            )
            report.oversold_units += max(reserved - on_hand - allowed, 0)
        if on_hand < -allowed:
            report.oversold_units += -allowed - on_hand
        if int(held.get((sku, location)) or 0) != reserved:
            report.violations.append(
                f"I2 {where}: reserved {reserved}, held allocations sum to "
                f"{held.get((sku, location)) or 0}"
            )
        if int(ledger.get((sku, location)) or 0) != on_hand:
            report.violations.append(
                f"I3 {where}: on_hand {on_hand}, ledger sums to {ledger.get((sku, location)) or 0}"
            )
    for sku, location in sorted(set(held) - set(levels)):
        if held[(sku, location)]:
            report.violations.append(
                f"I2 {sku}@{location}: no level, held allocations sum to {held[(sku, location)]}"
            )
    for sku, location in sorted(set(ledger) - set(levels)):
        if ledger[(sku, location)]:
            report.violations.append(
                f"I3 {sku}@{location}: no level, ledger sums to {ledger[(sku, location)]}"
            )
    for reservation_id, sku, quantity, drawn in uneven:
        report.violations.append(
            f"I2 {sku}: line of {reservation_id} holds {quantity}, its allocations sum to {drawn}"
        )
