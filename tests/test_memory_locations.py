"""Stock per location on the in-memory store's transaction API (docs/locations.md), and the
same scenario on SQLite, so the two stores are seen to keep the same tables: a located
hold (``stores/located.py``) split over two locations, a partial release, a confirm per
allocation, a release and an expiry, with exact levels, allocations and ledger after each
step and the audit clean throughout. Plus the audit per location seeing a corrupted level.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from stockguard import domain
from stockguard.domain import Allocation, Line, Reservation, Status
from stockguard.domain.locations import AllocationPolicy, Location, LocationLevel
from stockguard.stores import located
from stockguard.stores.memory import CheckViolation, MemoryStore
from stockguard.stores.operations import StoreOperations
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit
from stockguard.stores.sql.store import SqlStore

pytestmark = pytest.mark.asyncio

DEFAULT = domain.DEFAULT_LOCATION_CODE
NORTH = "north"


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'locations.db'}", pool_size=2)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def hold(
    store: StoreOperations, order_id: str, quantity: int, *, expired: bool = False
) -> Reservation:
    """A hold of ``quantity`` of A decided by the allocation policy, as a strategy does it:
    the SKU row locked, ``located.hold_locked`` (which inserts the hold), one transaction.
    ``expired``: made a minute in the past with a 1 s lifetime, so it is already due."""
    request = domain.validate_reserve(order_id, [("A", quantity)], ttl_s=1)
    async with store.transaction() as tx:
        now_ms = await tx.now_ms()
        levels = await tx.levels(["A"], lock=True)
        made = await located.hold_locked(
            tx,
            request,
            levels,
            AllocationPolicy.PRIORITY,
            store.new_id,
            now_ms - 60_000 if expired else now_ms,
        )
        await tx.commit()
    return made


async def counts(store: StoreOperations) -> dict[str, tuple[int, int]]:
    """A's (on_hand, reserved) per location, and its totals under ``total``."""
    (level,) = await store.stock(["A"])
    found = {lv.location: (lv.on_hand, lv.reserved) for lv in level.locations}
    found["total"] = (level.on_hand, level.reserved)
    return found


async def ledger(store: StoreOperations) -> list[tuple[str, int, int, str]]:
    """A's movements in order: (reason, delta, on_hand_after, location), from the tables."""
    if isinstance(store, MemoryStore):
        return [
            (m.reason, m.delta, m.on_hand_after, m.location)
            for _, m in store.state.movements
            if m.sku == "A"
        ]
    assert isinstance(store, SqlStore)
    m = t.stock_movements.c
    async with store.transaction(read_only=True) as tx:
        rows = await tx.connection.execute(
            select(m.reason, m.delta, m.on_hand_after, m.location)
            .where(m.sku == "A")
            .order_by(m.seq)
        )
        return [(r.reason, int(r.delta), int(r.on_hand_after), r.location) for r in rows]


async def assert_clean(store: StoreOperations) -> None:
    report = await audit(store)  # type: ignore[arg-type]
    assert report.violations == [] and report.oversold_units == 0


async def scenario(store: StoreOperations) -> list[Any]:
    """The whole walk, asserting exact counts at each step; returns what it saw."""
    seen: list[Any] = []
    assert [lc.code for lc in await store.list_locations()] == [DEFAULT]
    await store.create_location(Location(NORTH, "North warehouse", 10, True))
    assert [lc.code for lc in await store.list_locations()] == [DEFAULT, NORTH]
    await store.set_location_stock("A", DEFAULT, 5)
    await store.set_location_stock("A", NORTH, 10)
    assert await counts(store) == {DEFAULT: (5, 0), NORTH: (10, 0), "total": (15, 0)}
    await assert_clean(store)

    # priority: the default location (0) first, then north (10)
    first = await hold(store, "o1", 8)
    assert first.lines[0].allocations == (Allocation(DEFAULT, 5), Allocation(NORTH, 3))
    read = await store.get_reservation(first.id)
    assert read.lines[0].allocations == (Allocation(DEFAULT, 5), Allocation(NORTH, 3))
    assert await counts(store) == {DEFAULT: (5, 5), NORTH: (10, 3), "total": (15, 8)}
    await assert_clean(store)
    seen.append(await counts(store))

    # a partial release gives back in the reverse of the order drawn: north first
    shrunk = await store.release_part(first.id, [Line("A", 2)])
    assert shrunk.lines[0].quantity == 6
    read = await store.get_reservation(first.id)
    assert read.lines[0].allocations == (Allocation(DEFAULT, 5), Allocation(NORTH, 1))
    assert await counts(store) == {DEFAULT: (5, 5), NORTH: (10, 1), "total": (15, 6)}
    await assert_clean(store)
    seen.append(await counts(store))

    # a confirm sells each allocation where it was held, one sale movement each
    assert (await store.confirm(first.id)).status is Status.CONFIRMED
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (9, 0), "total": (9, 0)}
    await assert_clean(store)
    seen.append(await counts(store))

    # the default location is empty now: the whole hold draws from north; released
    second = await hold(store, "o2", 4)
    assert second.lines[0].allocations == (Allocation(NORTH, 4),)
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (9, 4), "total": (9, 4)}
    await assert_clean(store)
    assert (await store.release(second.id)).status is Status.RELEASED
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (9, 0), "total": (9, 0)}
    await assert_clean(store)
    seen.append(await counts(store))

    # an expiry gives the units back where they were held too
    third = await hold(store, "o3", 3, expired=True)
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (9, 3), "total": (9, 3)}
    await assert_clean(store)
    assert await store.expire_due() == 1
    assert (await store.get_reservation(third.id)).status is Status.EXPIRED
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (9, 0), "total": (9, 0)}
    await assert_clean(store)
    seen.append(await counts(store))

    # refused when the permitted locations have too little, nothing written
    with pytest.raises(domain.OutOfStock):
        await hold(store, "o4", 10)
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (9, 0), "total": (9, 0)}

    moves = await ledger(store)
    assert moves == [
        ("created", 5, 5, DEFAULT),
        ("set", 10, 10, NORTH),
        ("sale", -5, 0, DEFAULT),
        ("sale", -1, 9, NORTH),
    ]
    seen.append(moves)
    await assert_clean(store)
    return seen


async def test_memory_store_keeps_stock_per_location() -> None:
    await scenario(MemoryStore())


async def test_sqlite_and_memory_agree(sqlite_store: SqlStore) -> None:
    assert await scenario(sqlite_store) == await scenario(MemoryStore())


async def test_memory_tx_methods_as_sql(sqlite_store: SqlStore) -> None:
    """The writes per location (moves, optimistic version writes), on both stores alike."""
    results = []
    for store in (MemoryStore(), sqlite_store):
        await store.create_location(Location(NORTH, "North", 1, True))
        await store.set_location_stock("A", DEFAULT, 2)
        await store.set_location_stock("A", NORTH, 3, backorder_max=2)
        got: list[Any] = []
        async with store.transaction() as tx:
            now_ms = await tx.now_ms()
            (row,) = (await tx.levels(["A"])).values()
            got.append(row.located)
            got.append(await tx.add_reserved_if_available("A", 1, now_ms))  # located: no
            await tx.move_location_levels({("A", NORTH): (0, 4)}, now_ms)  # 2 on the allowance
            level = (await tx.location_levels(["A"]))["A"][NORTH]
            got.append((level.on_hand, level.reserved, level.version, level.backorder_max))
            stale = LocationLevel("A", NORTH, 3, 4, level.version - 1, 0, 2)
            got.append(await tx.write_location_reserved_if_version(stale, 0, now_ms))
            got.append(await tx.write_location_reserved_if_version(level, 1, now_ms))
            got.append(await tx.location_levels(["A", "B"]))
            await tx.commit()
        got.append(await counts(store))
        results.append(got)
    memory, sql = results
    assert memory == sql
    assert memory[:2] == [True, False]


async def test_memory_location_level_refuses_oversold_and_rolls_back() -> None:
    store = MemoryStore()
    await store.create_location(Location(NORTH, "North", 1, True))
    await store.set_location_stock("A", NORTH, 3)

    async def oversell() -> None:
        async with store.transaction() as tx:
            await tx.move_location_levels({("A", NORTH): (0, 2)}, 0)
            await tx.move_location_levels({("A", NORTH): (0, 2)}, 0)  # 4 of 3

    with pytest.raises(CheckViolation):
        await oversell()
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (3, 0), "total": (3, 0)}
    async with store.transaction() as tx:  # written, not committed: not seen
        await tx.move_location_levels({("A", NORTH): (0, 2)}, 0)
        await tx.insert_location(Location("south", "South", 2, True), 0)
    assert await counts(store) == {DEFAULT: (0, 0), NORTH: (3, 0), "total": (3, 0)}
    assert [lc.code for lc in await store.list_locations()] == [DEFAULT, NORTH]
    await assert_clean(store)


async def test_audit_reports_a_corrupted_location_level(sqlite_store: SqlStore) -> None:
    await sqlite_store.create_location(Location(NORTH, "North", 1, True))
    await sqlite_store.set_location_stock("A", NORTH, 4)
    held = await hold(sqlite_store, "o1", 3)
    await assert_clean(sqlite_store)
    async with sqlite_store.transaction() as tx:
        await tx.connection.execute(
            text(
                "UPDATE location_levels SET reserved = reserved + 1, on_hand = on_hand + 2 "
                "WHERE sku = 'A' AND location = 'north'"
            )
        )
        await tx.commit()
    report = await audit(sqlite_store)
    assert report.violations == [
        "I2 A@north: reserved 4, held allocations sum to 3",
        "I3 A@north: on_hand 6, ledger sums to 4",
    ]
    async with sqlite_store.transaction() as tx:  # the default level's I2 is checked too
        await tx.connection.execute(
            text("UPDATE stock_levels SET on_hand = 1, reserved = 1 WHERE sku = 'A'")
        )
        await tx.connection.execute(
            text("UPDATE location_levels SET reserved = 5 WHERE sku = 'A' AND location = 'north'")
        )
        await tx.commit()
    report = await audit(sqlite_store)
    assert report.violations == [
        "I2 A: reserved 1, held lines sum to 0",
        "I3 A: on_hand 1, ledger sums to 0",
        "I2 A@north: reserved 5, held allocations sum to 3",
        "I3 A@north: on_hand 6, ledger sums to 4",
    ]
    async with sqlite_store.transaction() as tx:  # an allocation that no longer sums
        await tx.connection.execute(text("UPDATE reservation_allocations SET quantity = 2"))
        await tx.commit()
    report = await audit(sqlite_store)
    assert report.violations[-2:] == [
        "I3 A@north: on_hand 6, ledger sums to 4",
        f"I2 A: line of {held.id} holds 3, its allocations sum to 2",
    ]


async def test_memory_audit_reports_a_corrupted_location_level() -> None:
    store = MemoryStore()
    await store.create_location(Location(NORTH, "North", 1, True))
    await store.set_location_stock("A", NORTH, 4)
    await hold(store, "o1", 3)
    await assert_clean(store)
    level = store.state.location_levels[("A", NORTH)]
    store.state.location_levels[("A", NORTH)] = LocationLevel("A", NORTH, 2, 3, level.version)
    report = await audit(store)
    assert report.violations == [
        "I1 A@north: reserved 3, on_hand 2",
        "I3 A@north: on_hand 2, ledger sums to 4",
    ]
    assert report.oversold_units == 1
