"""Stock per location under the redis strategy (docs/locations.md).

reserve.lua allocates each line of a located SKU over its levels in Redis, mirroring
``domain.locations.allocate`` (a Hypothesis test compares the two on random levels); the
hold and its stream entry carry the allocations, every ending settles exactly there, and
the persister writes ``location_levels``, ``reservation_allocations`` and movements per
location. After ``settle()`` the SQL audit is clean and SQL's levels equal Redis's.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_support import redis_engine
from stockguard import domain
from stockguard.domain import Allocation, Line
from stockguard.domain.locations import (
    AllocationPolicy,
    Location,
    LocationLevel,
    allocate,
)
from stockguard.engine import Engine
from stockguard.stores.redis.client import connect, drop_keyspace
from stockguard.stores.redis.holds import RedisHolds
from stockguard.stores.redis.keys import KeyLayout
from stockguard.stores.redis.loader import locations_fields
from stockguard.stores.redis.reconcile import reconcile
from stockguard.strategies.redis import RedisStrategy


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def redis_of(engine: Engine) -> RedisStrategy:
    return cast(RedisStrategy, engine.strategy)


def counts(level: domain.StockLevel) -> dict[str, tuple[int, int]]:
    return {lv.location: (lv.on_hand, lv.reserved) for lv in level.locations}


async def assert_sql_equals_redis(engine: Engine, skus: list[str]) -> None:
    """After settle(): the audit is clean, and SQL shows exactly Redis's levels."""
    report = await engine.audit()
    assert report.violations == [], report.violations
    from_redis = await redis_of(engine).stock(skus)
    from_sql = await engine.store.stock(skus)
    assert [(lv.sku, lv.on_hand, lv.reserved, lv.available) for lv in from_redis] == [
        (lv.sku, lv.on_hand, lv.reserved, lv.available) for lv in from_sql
    ]
    assert [counts(lv) for lv in from_redis] == [counts(lv) for lv in from_sql]


async def three_locations(engine: Engine, sku: str, default: int, a: int, b: int) -> None:
    await engine.create_location("A", "Warehouse A", priority=1)
    await engine.create_location("B", "Store B", priority=2)
    await engine.set_on_hand(sku, default)
    await engine.set_location_stock(sku, "A", a)
    await engine.set_location_stock(sku, "B", b)


@pytest.mark.asyncio
async def test_500_buyers_on_three_locations_sell_exactly_the_stock(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await three_locations(engine, "HOT", 100, 150, 50)
        shown = (await engine.stock(["HOT"]))[0]
        assert (shown.on_hand, shown.reserved, shown.available) == (300, 0, 300)

        async def buy(i: int) -> bool:
            policy = "most_available" if i % 2 else None
            try:
                await engine.reserve(f"o-{i}", [("HOT", 1)], allocation_policy=policy)
            except domain.OutOfStock:
                return False
            return True

        held = await asyncio.gather(*(buy(i) for i in range(500)))
        assert sum(held) == 300
        shown = (await engine.stock(["HOT"]))[0]
        assert (shown.on_hand, shown.reserved, shown.available) == (300, 300, 0)
        assert counts(shown) == {"default": (100, 100), "A": (150, 150), "B": (50, 50)}
        await assert_sql_equals_redis(engine, ["HOT"])


@pytest.mark.asyncio
async def test_split_pinned_and_unsplit_orders_draw_where_the_domain_says(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await three_locations(engine, "S", 2, 3, 5)
        split = (await engine.reserve("split", [("S", 6)])).reservation
        assert split.lines[0].allocations == (
            Allocation("default", 2),
            Allocation("A", 3),
            Allocation("B", 1),
        )
        pinned = (await engine.reserve("pin", [Line("S", 2, location="B")])).reservation
        assert pinned.lines[0].allocations == (Allocation("B", 2),)
        with pytest.raises(domain.OutOfStock) as refused:
            await engine.reserve("pin-a", [Line("S", 1, location="A")])
        assert refused.value.shortfalls[0].available == 0
        with pytest.raises(domain.OutOfStock):  # 2 left at B, none alone has 3
            await engine.reserve("whole", [("S", 3)], split=False)
        whole = (await engine.reserve("whole-2", [("S", 2)], split=False)).reservation
        assert whole.lines[0].allocations == (Allocation("B", 2),)
        with pytest.raises(domain.InvalidInput):
            await engine.reserve("nowhere", [Line("S", 1, location="NOPE")])
        # A replay answers the same hold, allocations included.
        again = (await engine.reserve("split", [("S", 6)])).reservation
        assert again.lines[0].allocations == split.lines[0].allocations
        await engine.confirm(split.id)
        await engine.release(pinned.id)
        shown = (await engine.stock(["S"]))[0]
        assert counts(shown) == {"default": (0, 0), "A": (0, 0), "B": (4, 2)}
        await assert_sql_equals_redis(engine, ["S"])
        found = await engine.store.get_reservation(split.id)
        assert found.lines[0].allocations == split.lines[0].allocations


@pytest.mark.asyncio
async def test_a_deactivated_location_stops_selling_and_keeps_its_holds(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await three_locations(engine, "D", 0, 4, 4)
        first = (await engine.reserve("a-1", [("D", 2)])).reservation
        second = (await engine.reserve("a-2", [("D", 1)])).reservation
        assert first.lines[0].allocations == (Allocation("A", 2),)
        await engine.update_location("A", active=False)
        shown = (await engine.stock(["D"]))[0]
        assert (shown.on_hand, shown.available) == (4, 4)  # A's stock left the totals
        later = (await engine.reserve("b-1", [("D", 2)])).reservation
        assert later.lines[0].allocations == (Allocation("B", 2),)
        with pytest.raises(domain.OutOfStock):
            await engine.reserve("pin-a", [Line("D", 1, location="A")])
        await engine.confirm(first.id)
        await engine.release(second.id)
        shown = (await engine.stock(["D"]))[0]
        assert counts(shown) == {"default": (0, 0), "A": (2, 0), "B": (4, 2)}
        await engine.update_location("A", active=True)
        back = (await engine.reserve("a-3", [("D", 2)])).reservation
        assert back.lines[0].allocations == (Allocation("A", 2),)
        await assert_sql_equals_redis(engine, ["D"])


@pytest.mark.asyncio
async def test_partial_release_gives_back_per_allocation(db_url: str, redis_url: str) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await three_locations(engine, "P", 1, 2, 3)
        await engine.set_location_stock("P", "B", 3, backorder_max=2)
        held = (await engine.reserve("p", [("P", 8)])).reservation
        assert held.lines[0].allocations == (
            Allocation("default", 1),
            Allocation("A", 2),
            Allocation("B", 5, 2),
        )
        await engine.settle()  # the hold in SQL first: then a release of an older hold
        part = await engine.release(held.id, [("P", 4)])
        assert part.lines[0].allocations == (
            Allocation("default", 1),
            Allocation("A", 2),
            Allocation("B", 1),
        )
        part = await engine.release(part.id, [("P", 2)])
        assert part.lines[0].allocations == (Allocation("default", 1), Allocation("A", 1))
        shown = (await engine.stock(["P"]))[0]
        assert counts(shown) == {"default": (1, 1), "A": (2, 1), "B": (3, 0)}
        await assert_sql_equals_redis(engine, ["P"])
        found = await engine.store.get_reservation(held.id)
        assert found.lines[0].allocations == part.lines[0].allocations
        # A hold made and partly released in one persister batch, then confirmed.
        other = (await engine.reserve("q", [("P", 4)])).reservation
        other = await engine.release(other.id, [("P", 1)])
        await engine.confirm(other.id)
        await assert_sql_equals_redis(engine, ["P"])


@pytest.mark.asyncio
async def test_set_location_stock_compares_and_sets_in_redis_and_sql(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await engine.create_location("A", "A", priority=1)
        level = await engine.set_location_stock("NEW", "A", 5)  # creates the SKU too
        assert counts(level) == {"default": (0, 0), "A": (5, 0)}
        with pytest.raises(domain.StockChanged):
            await engine.set_location_stock("NEW", "A", 7, expected_on_hand=4)
        held = (await engine.reserve("n", [("NEW", 3)])).reservation
        with pytest.raises(domain.BelowReserved):
            await engine.set_location_stock("NEW", "A", 2)
        with pytest.raises(domain.UnknownLocation):
            await engine.set_location_stock("NEW", "NOPE", 2)
        level = await engine.set_location_stock("NEW", "A", 9, expected_on_hand=5, safety_stock=1)
        assert (level.on_hand, level.reserved, level.available) == (9, 3, 5)
        await engine.confirm(held.id)
        await assert_sql_equals_redis(engine, ["NEW"])


@pytest.mark.asyncio
async def test_a_reload_from_sql_brings_back_levels_locations_and_allocations(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await three_locations(engine, "R", 1, 2, 3)
        held = (await engine.reserve("r", [("R", 4)])).reservation
        await engine.update_location("B", active=False)
        await engine.settle()
        strategy = redis_of(engine)
        before = await strategy.stock(["R"])
        await strategy.clients.commands.delete(strategy.keys.loaded)
        strategy._seen_loaded = False
        await strategy._autoload()
        after = await strategy.stock(["R"])
        assert [counts(lv) for lv in after] == [counts(lv) for lv in before]
        assert (await strategy.get_reservation(held.id)).lines[0].allocations == (
            Allocation("default", 1),
            Allocation("A", 2),
            Allocation("B", 1),
        )
        await engine.release(held.id)
        with pytest.raises(domain.OutOfStock):  # B is still inactive after the reload
            await engine.reserve("r-2", [("R", 4)])
        await assert_sql_equals_redis(engine, ["R"])


@pytest.mark.asyncio
async def test_an_expired_located_hold_gives_back_at_its_locations(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await three_locations(engine, "E", 1, 1, 1)
        await engine.reserve("e", [("E", 3)], ttl_s=1)
        await asyncio.sleep(1.1)
        assert await engine.expire_due() == 1
        shown = (await engine.stock(["E"]))[0]
        assert counts(shown) == {"default": (1, 0), "A": (1, 0), "B": (1, 0)}
        await assert_sql_equals_redis(engine, ["E"])


@pytest.mark.asyncio
async def test_reconcile_checks_and_repairs_levels_at_locations_and_allocations(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await three_locations(engine, "C", 1, 2, 3)
        held = (await engine.reserve("c", [("C", 4)])).reservation
        await engine.settle()
        strategy = redis_of(engine)
        report = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert report.consistent, report.differences
        r = strategy.clients.commands
        await r.hset(strategy.keys.located("C"), "B", "9 0 0 0 0")
        await r.hset(strategy.keys.reservation(held.id), "alloc", "C\tA\t4\t0")
        report = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert {d.subject for d in report.differences} == {
            "sku C at B",
            f"allocations {held.id}",
        }
        report = await reconcile(strategy.clients, engine.store, strategy.keys, repair=True)
        assert report.consistent, report.differences
        await engine.confirm(held.id)
        await assert_sql_equals_redis(engine, ["C"])


# ---------------------------------------------------------------------------- Lua = domain

CODES = ("default", "A", "B", "C")


@st.composite
def situations(draw: st.DrawFn) -> tuple[dict[str, LocationLevel], dict[str, Location]]:
    locations = {
        code: Location(
            code,
            code,
            draw(st.integers(0, 3)),
            True if code == "default" else draw(st.booleans()),
        )
        for code in CODES
    }
    levels: dict[str, LocationLevel] = {}
    for code in CODES:
        if code != "default" and not draw(st.booleans()):
            continue  # no level there
        on_hand = draw(st.integers(0, 8))
        backorder_max = draw(st.integers(0, 3))
        reserved = draw(st.integers(0, on_hand + backorder_max))
        levels[code] = LocationLevel(
            "X", code, on_hand, reserved, 0, draw(st.integers(0, 3)), backorder_max
        )
    return levels, locations


@pytest.mark.asyncio
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    situation=situations(),
    quantity=st.integers(1, 12),
    policy=st.sampled_from(list(AllocationPolicy)),
    split=st.booleans(),
    pinned=st.sampled_from((None, *CODES)),
)
async def test_reserve_lua_allocates_as_the_domain(
    redis_url: str,
    situation: tuple[dict[str, LocationLevel], dict[str, Location]],
    quantity: int,
    policy: AllocationPolicy,
    split: bool,
    pinned: str | None,
) -> None:
    levels, locations = situation
    keys = KeyLayout(f"sg-test-{uuid.uuid4().hex[:12]}")
    clients = connect(redis_url, 2)
    try:
        r = clients.commands
        default = levels["default"]
        fields: dict[str, int] = {
            "on_hand": default.on_hand,
            "reserved": default.reserved,
            "version": 0,
        }
        if default.safety_stock:
            fields["safety"] = default.safety_stock
        if default.backorder_max:
            fields["backorder"] = default.backorder_max
        if len(levels) > 1:
            fields["located"] = 1
            await r.hset(
                keys.located("X"),
                mapping={
                    code: f"{lv.on_hand} {lv.reserved} 0 {lv.safety_stock} {lv.backorder_max}"
                    for code, lv in levels.items()
                    if code != "default"
                },
            )
        await r.hset(keys.stock("X"), mapping=fields)  # type: ignore[arg-type]
        await r.hset(keys.locations, mapping=locations_fields(locations))  # type: ignore[arg-type]
        await r.set(keys.loaded, "test")
        request = domain.validate_reserve(
            "o", [Line("X", quantity, location=pinned)], 60, None, policy.value, split
        )
        wanted = allocate(levels, locations, request.lines[0], policy, split, pinned)
        holds = RedisHolds(r, keys)
        try:
            outcome = await holds.reserve(request, "rid")
        except domain.OutOfStock as refused:
            assert isinstance(wanted, domain.Shortfall), wanted
            assert refused.shortfalls[0] == wanted
            return
        assert not isinstance(wanted, domain.Shortfall), (wanted, outcome)
        line = outcome.reservation.lines[0]  # type: ignore[union-attr]
        if len(levels) > 1 or (pinned not in (None, "default")):
            assert line.allocations == wanted
        else:  # a SKU stocked only at the default location: no allocations stored
            assert line.allocations == ()
            assert (line.quantity, line.backordered) == (quantity, wanted[0].backordered)
        assert line.backordered == sum(a.backordered for a in wanted)
    finally:
        await clients.close()
        await drop_keyspace(redis_url, keys.prefix)
