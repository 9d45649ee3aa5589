"""Stock per location (issue 14, docs/locations.md) on every strategy and backend: 500
buyers over 3 locations get exact totals per location, a split order, a pinned
(click-and-collect) order, a deactivated location that stops selling but keeps its holds,
and every ending settled exactly where the units were held.

The same fixtures as tests/test_contract.py (one engine per backend x strategy); each case
asserts exact counts from the answers, then the levels per location, then audits.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stockguard import domain
from stockguard.domain import Line
from stockguard.domain.locations import Location
from stockguard.engine import Engine
from test_contract import assert_invariants

pytestmark = [pytest.mark.asyncio, pytest.mark.memory]


@pytest.fixture(autouse=True)
def _one_strategy_cases(strategy: str, request: pytest.FixtureRequest) -> None:
    if request.node.name.startswith("test_sharded_") and strategy != "sharded":
        pytest.skip("a case of the sharded strategy alone")


async def add_location(engine: Engine, code: str, priority: int) -> None:
    await engine.strategy.create_location(Location(code, code.title(), priority))


async def stock(engine: Engine, sku: str, **on_hand: int) -> None:
    for code, units in on_hand.items():
        await engine.strategy.set_location_stock(sku, code.replace("_", "-"), units)


async def by_location(engine: Engine, sku: str) -> dict[str, tuple[int, int]]:
    """(on_hand, reserved) per location, as the strategy shows them after settling."""
    await engine.strategy.settle()
    (level,) = await engine.stock([sku])
    return {lv.location: (lv.on_hand, lv.reserved) for lv in level.locations}


def drawn(reservation: domain.Reservation, sku: str) -> dict[str, int]:
    line = next(line for line in reservation.lines if line.sku == sku)
    return {a.location: a.quantity for a in line.drawn()}


async def reserve(
    engine: Engine,
    order_id: str,
    lines: list[Line],
    *,
    allocation_policy: str | None = None,
    split: bool = True,
) -> domain.ReserveOutcome:
    request = domain.validate_reserve(order_id, lines, 900, None, allocation_policy, split)
    return await engine.admission.reserve(request)


async def test_500_buyers_over_3_locations_get_exact_totals_per_location(engine: Engine) -> None:
    """20 + 30 + 10 units at three locations: 500 buyers of one unit get exactly 60 holds,
    every location is emptied exactly (priority order fills them all), and confirming
    every hold takes each location's on_hand to exactly 0."""
    await add_location(engine, "wh-2", 10)
    await add_location(engine, "store-3", 20)
    await stock(engine, "LOC", default=20, wh_2=30, store_3=10)
    assert (await engine.stock_of("LOC")).available == 60

    # 100 in flight at a time: enough to hammer the levels, and the per-request strategies
    # (each hold locks the SKU's rows) clear them within the pool's wait on a busy machine.
    in_flight = asyncio.Semaphore(100)

    async def buy(n: int) -> domain.Reservation | None:
        async with in_flight:
            try:
                return (await reserve(engine, f"loc-{n}", [Line("LOC", 1)])).reservation
            except domain.OutOfStock as refused:
                assert refused.shortfalls == (domain.Shortfall("LOC", 1, 0),)
                return None

    held = [r for r in await asyncio.gather(*(buy(n) for n in range(500))) if r is not None]

    assert len(held) == 60
    places = Counter(next(iter(drawn(r, "LOC"))) for r in held)
    assert places == {"default": 20, "wh-2": 30, "store-3": 10}
    assert await by_location(engine, "LOC") == {
        "default": (20, 20),
        "wh-2": (30, 30),
        "store-3": (10, 10),
    }
    assert (await engine.stock_of("LOC")).available == 0
    await assert_invariants(engine)

    for reservation in held:
        await engine.confirm(reservation.id)
    assert await by_location(engine, "LOC") == {
        "default": (0, 0),
        "wh-2": (0, 0),
        "store-3": (0, 0),
    }
    page, _ = await engine.movements("LOC", limit=domain.PAGE_LIMIT_MAX)
    sales = Counter(m.location for m in page if m.reason == "sale")
    assert sales == {"default": 20, "wh-2": 30, "store-3": 10}
    await assert_invariants(engine)


async def test_a_split_order_draws_from_two_locations_and_settles_both(engine: Engine) -> None:
    """3 at the warehouse (default) and 4 at the store: an order of 6 takes 3 + 3 in
    priority order; released, both levels get their units back. Without split, 5 is
    refused (no one location has 5) and 4 comes from the store alone."""
    await add_location(engine, "store-1", 10)
    await stock(engine, "SPLIT", default=3, store_1=4)

    first = (await reserve(engine, "split-1", [Line("SPLIT", 6)])).reservation
    assert drawn(first, "SPLIT") == {"default": 3, "store-1": 3}
    assert await by_location(engine, "SPLIT") == {"default": (3, 3), "store-1": (4, 3)}
    again = await engine.get_reservation(first.id)
    assert drawn(again, "SPLIT") == {"default": 3, "store-1": 3}
    await engine.release(first.id)
    assert await by_location(engine, "SPLIT") == {"default": (3, 0), "store-1": (4, 0)}

    with pytest.raises(domain.OutOfStock) as refused:
        await reserve(engine, "split-2", [Line("SPLIT", 5)], split=False)
    assert refused.value.shortfalls == (domain.Shortfall("SPLIT", 5, 4),)
    whole = (await reserve(engine, "split-3", [Line("SPLIT", 4)], split=False)).reservation
    assert drawn(whole, "SPLIT") == {"store-1": 4}

    # most_available starts where most is left: the warehouse's 3 against the store's 0.
    rest = (
        await reserve(engine, "split-4", [Line("SPLIT", 2)], allocation_policy="most_available")
    ).reservation
    assert drawn(rest, "SPLIT") == {"default": 2}
    await engine.confirm(whole.id)
    assert await by_location(engine, "SPLIT") == {"default": (3, 2), "store-1": (0, 0)}
    await assert_invariants(engine)


async def test_a_pinned_order_draws_only_from_its_location(engine: Engine) -> None:
    """Click-and-collect: a line pinned to the store draws there even though the warehouse
    comes first; more than the store has is refused although the SKU has enough; a pin to
    no location is invalid input and changes nothing."""
    await add_location(engine, "store-1", 10)
    await stock(engine, "PIN", default=10, store_1=2)

    collect = (await reserve(engine, "pin-1", [Line("PIN", 2, location="store-1")])).reservation
    assert drawn(collect, "PIN") == {"store-1": 2}
    with pytest.raises(domain.OutOfStock) as refused:
        await reserve(engine, "pin-2", [Line("PIN", 1, location="store-1")])
    assert refused.value.shortfalls == (domain.Shortfall("PIN", 1, 0),)
    with pytest.raises(domain.InvalidInput):
        await reserve(engine, "pin-3", [Line("PIN", 1, location="nowhere")])
    # The refusals of pinned lines mark nothing sold out: the warehouse still sells.
    plain = (await reserve(engine, "pin-4", [Line("PIN", 3)])).reservation
    assert drawn(plain, "PIN") == {"default": 3}
    assert await by_location(engine, "PIN") == {"default": (10, 3), "store-1": (2, 2)}
    await assert_invariants(engine)


async def test_sharded_folds_a_skus_buckets_when_it_is_stocked_elsewhere(
    engine: Engine,
) -> None:
    """A sharded SKU with holds in its buckets is stocked at a second location: its
    buckets fold into its row with their holds, which then settle on the row, and new
    holds draw by the allocation policy from both."""
    await engine.set_on_hand("SHARD", 10)
    early = (await reserve(engine, "shard-1", [Line("SHARD", 3)])).reservation
    kept = (await reserve(engine, "shard-2", [Line("SHARD", 2)])).reservation
    await add_location(engine, "store-1", 10)
    await stock(engine, "SHARD", store_1=5)
    assert await by_location(engine, "SHARD") == {"default": (10, 5), "store-1": (5, 0)}
    await assert_invariants(engine)

    await engine.confirm(early.id)
    await engine.release(kept.id)
    assert await by_location(engine, "SHARD") == {"default": (7, 0), "store-1": (5, 0)}
    split = (await reserve(engine, "shard-3", [Line("SHARD", 9)])).reservation
    assert drawn(split, "SHARD") == {"default": 7, "store-1": 2}
    await engine.adjust("SHARD", 1, "found")
    assert await by_location(engine, "SHARD") == {"default": (8, 7), "store-1": (5, 2)}
    await assert_invariants(engine)


async def test_a_sku_only_at_the_default_location_refuses_a_pin_elsewhere(engine: Engine) -> None:
    await add_location(engine, "store-1", 10)
    await engine.set_on_hand("HOME", 5)
    with pytest.raises(domain.OutOfStock):
        await reserve(engine, "home-1", [Line("HOME", 1, location="store-1")])
    home = (await reserve(engine, "home-2", [Line("HOME", 1, location="default")])).reservation
    assert drawn(home, "HOME") == {"default": 1}
    assert await by_location(engine, "HOME") == {"default": (5, 1)}
    await assert_invariants(engine)


async def test_a_deactivated_location_stops_selling_but_keeps_its_holds(engine: Engine) -> None:
    await add_location(engine, "store-1", 0)
    await stock(engine, "DEACT", default=5, store_1=5)
    kept = (await reserve(engine, "deact-1", [Line("DEACT", 2, location="store-1")])).reservation
    released = (
        await reserve(engine, "deact-2", [Line("DEACT", 1, location="store-1")])
    ).reservation

    await engine.strategy.update_location("store-1", active=False)
    level = await engine.stock_of("DEACT")
    assert (level.on_hand, level.reserved, level.available) == (5, 0, 5)
    with pytest.raises(domain.OutOfStock):
        await reserve(engine, "deact-3", [Line("DEACT", 1, location="store-1")])
    later = (await reserve(engine, "deact-4", [Line("DEACT", 5)])).reservation
    assert drawn(later, "DEACT") == {"default": 5}
    with pytest.raises(domain.OutOfStock):
        await reserve(engine, "deact-5", [Line("DEACT", 1)])

    await engine.confirm(kept.id)
    await engine.release(released.id)
    assert await by_location(engine, "DEACT") == {"default": (5, 5), "store-1": (3, 0)}
    with pytest.raises(domain.InvalidInput):
        await engine.strategy.update_location("default", active=False)
    await engine.strategy.update_location("store-1", active=True)
    back = (await reserve(engine, "deact-6", [Line("DEACT", 3)])).reservation
    assert drawn(back, "DEACT") == {"store-1": 3}
    await assert_invariants(engine)


async def test_partial_release_gives_back_the_last_drawn_first(engine: Engine) -> None:
    await add_location(engine, "store-1", 10)
    await stock(engine, "PART", default=2, store_1=5)
    held = (await reserve(engine, "part-1", [Line("PART", 6)])).reservation
    assert drawn(held, "PART") == {"default": 2, "store-1": 4}
    after = await engine.release(held.id, [("PART", 3)])
    assert drawn(after, "PART") == {"default": 2, "store-1": 1}
    assert await by_location(engine, "PART") == {"default": (2, 2), "store-1": (5, 1)}
    await engine.confirm(held.id)
    assert await by_location(engine, "PART") == {"default": (0, 0), "store-1": (4, 0)}
    await assert_invariants(engine)


async def test_expiry_gives_units_back_where_they_were_held(engine: Engine, strategy: str) -> None:
    """The expiry sweep is the store's for every strategy but sharded and redis (their
    own): one strategy per sweep, as each waits out a real 1 s lifetime."""
    if strategy not in ("coalescing", "sharded", "redis"):
        pytest.skip("the shared sweep runs under coalescing")
    await add_location(engine, "store-1", 10)
    await stock(engine, "EXP", default=1, store_1=3)
    request = domain.validate_reserve("exp-1", [Line("EXP", 3)], 1)
    held = (await engine.admission.reserve(request)).reservation
    assert drawn(held, "EXP") == {"default": 1, "store-1": 2}
    await asyncio.sleep(1.2)  # the hold's 1 s lifetime by the store's clock
    assert await engine.expire_due() >= 1
    assert await by_location(engine, "EXP") == {"default": (1, 0), "store-1": (3, 0)}
    await assert_invariants(engine)
