"""The upgrade to backorders (migration 0008, docs/design.md#backorders) on a database
that holds live reservations, on every backend: the rows survive (SQLite's table rebuild
included), the old holds confirm after it, every line reads ``backordered`` 0, and the
new I1 ``CHECK`` refuses what it must while accepting a negative on_hand the allowance
covers."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from stockguard import domain
from stockguard.engine import Engine
from stockguard.stores.migrations import upgrade
from stockguard.stores.sql.store import SqlStore
from test_migrations import empty_url  # noqa: F401  (the fixture)

NOW_MS = 1_764_000_000_000
LIVE = [
    "INSERT INTO stock_levels (sku, on_hand, reserved, version, updated_at_ms)"
    f" VALUES ('OLD', 10, 3, 1, {NOW_MS})",
    "INSERT INTO stock_movements (sku, at_ms, delta, on_hand_after, reason)"
    f" VALUES ('OLD', {NOW_MS}, 10, 10, 'created')",
    "INSERT INTO reservations (id, order_id, status, expires_at_ms, created_at_ms)"
    f" VALUES ('00000000-0000-4000-8000-000000000001', 'before-0008', 'held',"
    f" {NOW_MS + 10**11}, {NOW_MS})",
    "INSERT INTO reservation_lines (reservation_id, sku, quantity)"
    " VALUES ('00000000-0000-4000-8000-000000000001', 'OLD', 3)",
]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_upgrading_a_live_database_to_backorders_keeps_every_hold(
    empty_url: str,  # noqa: F811
) -> None:
    store = SqlStore.open(empty_url)
    try:
        await upgrade(store, "0007")
        async with store.engine.begin() as connection:
            for statement in LIVE:
                await connection.execute(text(statement))
        await upgrade(store)
    finally:
        await store.close()

    engine = await Engine.open(empty_url, strategy="conditional")
    try:
        held = await engine.get_reservation("00000000-0000-4000-8000-000000000001")
        assert [(line.sku, line.quantity, line.backordered) for line in held.lines] == [
            ("OLD", 3, 0)
        ]
        confirmed = await engine.confirm(held.id)
        assert confirmed.status is domain.Status.CONFIRMED
        level = await engine.stock_of("OLD")
        assert (level.on_hand, level.reserved, level.available) == (7, 0, 7)

        await engine.set_policy("OLD", domain.Policy(backorder_max=2))
        await engine.reserve("after-0008", [("OLD", 9)])
        report = await engine.audit()
        assert report.violations == [] and report.oversold_units == 0

        assert isinstance(engine.store, SqlStore)
        async with engine.store.engine.begin() as connection:
            await connection.execute(
                text("UPDATE stock_levels SET on_hand = -2, reserved = 0 WHERE sku = 'OLD'")
            )
            await connection.rollback()
        with pytest.raises((IntegrityError, OperationalError)):
            async with engine.store.engine.begin() as connection:
                await connection.execute(
                    text("UPDATE stock_levels SET reserved = 10 WHERE sku = 'OLD'")
                )
    finally:
        await engine.close()
