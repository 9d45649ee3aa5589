"""The upgrade to locations (migration 0009, docs/locations.md#migration) on a database that
holds live reservations, on every backend: the default location exists, every existing
level is its level there unchanged, the old holds (lines without allocations) settle on
it as before, the ledger's old movements read ``default``, and the SKU can then be
stocked at a second location and sold from both."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from stockguard import domain
from stockguard.domain import Line
from stockguard.domain.locations import Location
from stockguard.engine import Engine
from stockguard.stores.migrations import upgrade
from stockguard.stores.sql.store import SqlStore
from test_migrations import empty_url  # noqa: F401  (the fixture)

NOW_MS = 1_764_000_000_000
HELD = "00000000-0000-4000-8000-000000000001"
EXPIRING = "00000000-0000-4000-8000-000000000002"
LIVE = [
    "INSERT INTO stock_levels (sku, on_hand, reserved, version, updated_at_ms, backorder_max)"
    f" VALUES ('OLD', 10, 5, 1, {NOW_MS}, 2)",
    "INSERT INTO stock_movements (sku, at_ms, delta, on_hand_after, reason)"
    f" VALUES ('OLD', {NOW_MS}, 10, 10, 'created')",
    "INSERT INTO reservations (id, order_id, status, expires_at_ms, created_at_ms)"
    f" VALUES ('{HELD}', 'before-0009', 'held', {NOW_MS + 10**11}, {NOW_MS})",
    "INSERT INTO reservation_lines (reservation_id, sku, quantity, backordered)"
    f" VALUES ('{HELD}', 'OLD', 3, 0)",
    "INSERT INTO reservations (id, order_id, status, expires_at_ms, created_at_ms)"
    f" VALUES ('{EXPIRING}', 'before-0009-due', 'held', {NOW_MS}, {NOW_MS})",
    "INSERT INTO reservation_lines (reservation_id, sku, quantity, backordered)"
    f" VALUES ('{EXPIRING}', 'OLD', 2, 0)",
]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_upgrading_a_live_database_to_locations_keeps_every_hold(
    empty_url: str,  # noqa: F811
) -> None:
    store = SqlStore.open(empty_url)
    try:
        await upgrade(store, "0008")
        async with store.engine.begin() as connection:
            for statement in LIVE:
                await connection.execute(text(statement))
        await upgrade(store)
    finally:
        await store.close()

    engine = await Engine.open(empty_url, strategy="coalescing")
    try:
        assert [location.code for location in await engine.strategy.list_locations()] == ["default"]
        level = await engine.stock_of("OLD")
        assert (level.on_hand, level.reserved, level.backorder_max, level.located) == (
            10,
            5,
            2,
            False,
        )
        assert [(lv.location, lv.on_hand, lv.reserved) for lv in level.locations] == [
            ("default", 10, 5)
        ]
        held = await engine.get_reservation(HELD)
        assert [(line.sku, line.quantity, line.allocations) for line in held.lines] == [
            ("OLD", 3, ())
        ]
        assert await engine.expire_due() == 1  # the old due hold gives back at default
        await engine.confirm(HELD)
        level = await engine.stock_of("OLD")
        assert (level.on_hand, level.reserved) == (7, 0)
        page, _ = await engine.movements("OLD")
        assert {m.location for m in page} == {"default"}

        # The shop opens a store: the same SKU sells from both, the warehouse first.
        await engine.strategy.create_location(Location("store-1", "Store", 10))
        await engine.strategy.set_location_stock("OLD", "store-1", 4)
        split = await engine.reserve("after-0009", [("OLD", 9)])
        (line,) = split.reservation.lines
        assert [(a.location, a.quantity) for a in line.allocations] == [
            ("default", 7),
            ("store-1", 2),
        ]
        collect = await engine.reserve("collect", [Line("OLD", 2, location="store-1")])
        assert [(a.location, a.quantity) for a in collect.reservation.lines[0].allocations] == [
            ("store-1", 2)
        ]
        level = await engine.stock_of("OLD")
        assert (level.on_hand, level.reserved, level.available) == (11, 11, 2)
        report = await engine.audit()
        assert report.violations == [] and report.oversold_units == 0
        with pytest.raises(domain.OutOfStock):
            await engine.reserve("too-many", [Line("OLD", 1, location="store-1")])
    finally:
        await engine.close()
