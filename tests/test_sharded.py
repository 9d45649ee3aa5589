"""The sharded strategy: stock in bucket rows, exact totals, fallback and rebalancing.

Bucket contents are read straight from ``stock_buckets``; totals through ``stock_totals``
(the stock_levels row plus its buckets) and the audit, never through the strategy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from conftest import NO_WAIT_BUDGET
from stockguard import domain
from stockguard.engine import Engine
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit, stock_totals
from stockguard.stores.sql.buckets import Bucket, fill, spread
from stockguard.strategies import sharded as sharded_module
from stockguard.strategies.sharded import ShardedStrategy


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    opened = await Engine.open(
        db_url, "sharded", migrate=False, admission=NO_WAIT_BUDGET, buckets=8
    )
    try:
        yield opened
    finally:
        await opened.close()


def sharded(engine: Engine) -> ShardedStrategy:
    assert isinstance(engine.strategy, ShardedStrategy)
    return engine.strategy


async def buckets_of(engine: Engine, sku: str) -> list[tuple[int, int]]:
    """(on_hand, reserved) of each bucket, in bucket order."""
    async with engine.store.transaction(read_only=True) as tx:
        rows = await tx.connection.execute(
            select(t.stock_buckets.c.on_hand, t.stock_buckets.c.reserved)
            .where(t.stock_buckets.c.sku == sku)
            .order_by(t.stock_buckets.c.bucket)
        )
        return [(int(on_hand), int(reserved)) for on_hand, reserved in rows]


async def totals(engine: Engine, sku: str) -> tuple[int, int]:
    async with engine.store.transaction(read_only=True) as tx:
        found = (await stock_totals(tx.connection, [sku]))[sku]
    return found.on_hand, found.reserved


def test_spread_keeps_what_each_bucket_holds_and_evens_out_the_rest() -> None:
    rows = [Bucket("S", 0, 9, 7), Bucket("S", 1, 1, 0), Bucket("S", 2, 0, 0)]
    after = spread(rows, 12)
    assert [(r.on_hand, r.reserved) for r in after] == [(9, 7), (2, 0), (1, 0)]
    assert sum(r.on_hand for r in after) == 12


def test_fill_takes_from_buckets_in_order_or_not_at_all() -> None:
    rows = [Bucket("S", 0, 3, 3), Bucket("S", 1, 4, 0), Bucket("S", 2, 4, 1)]
    assert fill(rows, 6) == [(1, 4), (2, 2)]
    assert fill(rows, 8) is None


async def test_new_stock_is_spread_evenly_over_the_buckets(engine: Engine) -> None:
    await engine.set_on_hand("EVEN", 83)
    assert await buckets_of(engine, "EVEN") == [(11, 0)] * 3 + [(10, 0)] * 5
    assert await totals(engine, "EVEN") == (83, 0)


async def test_a_line_larger_than_any_bucket_is_filled_from_several(engine: Engine) -> None:
    await engine.set_on_hand("BIG", 80)
    hold = (await engine.reserve("big", [("BIG", 75)])).reservation

    assert sum(reserved for _, reserved in await buckets_of(engine, "BIG")) == 75
    assert await totals(engine, "BIG") == (80, 75)
    await engine.release(hold.id)
    after = await buckets_of(engine, "BIG")
    assert sum(on_hand for on_hand, _ in after) == 80
    assert all(reserved == 0 for _, reserved in after)
    assert (await audit(engine.store)).ok


async def test_buckets_drained_unevenly_are_rebalanced(engine: Engine) -> None:
    """Holds land on random buckets; when one is short, the fallback fills the line from
    the others and evens every bucket out while it holds their locks."""
    await engine.set_on_hand("DRIFT", 16)
    for n in range(10):
        await engine.reserve(f"d-{n}", [("DRIFT", 1)])
    await sharded(engine).rebalance("DRIFT")

    available = [on_hand - reserved for on_hand, reserved in await buckets_of(engine, "DRIFT")]
    assert sum(available) == 6
    assert max(available) - min(available) <= 1
    assert await totals(engine, "DRIFT") == (16, 10)
    assert (await audit(engine.store)).ok


async def test_confirm_release_and_expiry_settle_the_buckets_they_took_from(
    engine: Engine,
) -> None:
    await engine.set_on_hand("S", 24)
    sold = (await engine.reserve("sold", [("S", 5)])).reservation
    dropped = (await engine.reserve("dropped", [("S", 4)])).reservation
    await engine.reserve("lapsed", [("S", 3)], ttl_s=1)
    await engine.confirm(sold.id)
    await engine.release(dropped.id)
    await asyncio.sleep(1.1)

    assert await engine.expire_due() == 1
    assert await totals(engine, "S") == (19, 0)
    assert all(reserved == 0 for _, reserved in await buckets_of(engine, "S"))
    ledger, _ = await engine.movements("S")
    assert [(m.delta, m.on_hand_after, m.reason) for m in ledger] == [
        (-5, 19, "sale"),
        (24, 24, "created"),
    ]
    assert (await audit(engine.store)).ok


async def test_admin_edits_keep_holds_in_their_buckets(engine: Engine) -> None:
    await engine.set_on_hand("A", 40)
    for n in range(6):
        await engine.reserve(f"a-{n}", [("A", 3)])
    held_before = [reserved for _, reserved in await buckets_of(engine, "A")]

    await engine.adjust("A", -10, "damaged")
    level = await engine.set_on_hand("A", 50, expected_on_hand=30)
    with pytest.raises(domain.BelowReserved):
        await engine.set_on_hand("A", 17)

    assert (level.on_hand, level.reserved) == (50, 18)
    assert [reserved for _, reserved in await buckets_of(engine, "A")] == held_before
    assert (await audit(engine.store)).ok


async def test_the_bucket_count_is_set_per_sku_and_can_grow(db_url: str) -> None:
    async with await Engine.open(
        db_url,
        "sharded",
        migrate=False,
        admission=NO_WAIT_BUDGET,
        buckets=4,
        buckets_by_sku={"HOT": 16},
    ) as engine:
        await engine.set_on_hand("HOT", 32)
        await engine.set_on_hand("COLD", 8)
        assert len(await buckets_of(engine, "HOT")) == 16
        assert len(await buckets_of(engine, "COLD")) == 4

        await sharded(engine).rebalance("COLD", buckets=6)
        assert len(await buckets_of(engine, "COLD")) == 6
        assert await totals(engine, "COLD") == (8, 0)


async def test_a_sku_held_before_sharding_keeps_its_holds_on_its_row(db_url: str) -> None:
    """A SKU created and held by another strategy is sharded on first use: only its free
    units move into buckets; the older hold is released on the row it was taken from."""
    async with await Engine.open(
        db_url, "conditional", migrate=False, admission=NO_WAIT_BUDGET
    ) as plain:
        await plain.set_on_hand("OLD", 20)
        old_hold = (await plain.reserve("old", [("OLD", 5)])).reservation
    async with await Engine.open(
        db_url, "sharded", migrate=False, admission=NO_WAIT_BUDGET
    ) as engine:
        new_hold = (await engine.reserve("new", [("OLD", 3)])).reservation
        assert await totals(engine, "OLD") == (20, 8)
        assert sum(on_hand for on_hand, _ in await buckets_of(engine, "OLD")) == 15

        await engine.release(old_hold.id)
        await engine.confirm(new_hold.id)

        assert await totals(engine, "OLD") == (17, 0)
        assert (await engine.stock_of("OLD")).available == 17
        assert (await audit(engine.store)).ok


async def test_concurrent_buyers_of_one_sku_get_exactly_the_stock(engine: Engine) -> None:
    """400 buyers of 1-3 units race for 300 units in 8 buckets; then everyone who got
    something releases or confirms, concurrently."""
    await engine.set_on_hand("RUSH", 300)

    async def buy(n: int) -> domain.Reservation | None:
        try:
            return (await engine.reserve(f"rush-{n}", [("RUSH", 1 + n % 3)])).reservation
        except domain.OutOfStock:
            return None

    holds = [h for h in await asyncio.gather(*(buy(n) for n in range(400))) if h is not None]
    held_units = sum(h.lines[0].quantity for h in holds)
    assert 298 <= held_units <= 300
    assert await totals(engine, "RUSH") == (300, held_units)

    await asyncio.gather(
        *(engine.confirm(h.id) if n % 2 else engine.release(h.id) for n, h in enumerate(holds))
    )
    sold = sum(h.lines[0].quantity for n, h in enumerate(holds) if n % 2)
    assert await totals(engine, "RUSH") == (300 - sold, 0)
    assert (await audit(engine.store)).ok


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_reserves_confirms_releases_and_sweeps_racing_on_few_buckets_never_deadlock(
    db_url: str,
) -> None:
    """Every writer locks bucket rows before stock_levels rows. A reservation's lines take
    a shared lock on their stock_levels row (the foreign key check, on MariaDB) after
    its bucket; a confirm that locked the row first and then wanted that bucket would
    deadlock with it. 300 buyers of two SKUs with 2 buckets each pay, cancel or walk
    away at once, with a sweeper running: the database never has to abort a transaction."""
    async with await Engine.open(
        db_url, "sharded", migrate=False, admission=NO_WAIT_BUDGET, buckets=2
    ) as engine:
        for sku in ("DL-A", "DL-B"):
            await engine.set_on_hand(sku, 1_000)

        async def buyer(n: int) -> None:
            lines = [("DL-A", 1), ("DL-B", 1)] if n % 3 == 0 else [("DL-A" if n % 2 else "DL-B", 1)]
            hold = (
                await engine.reserve(f"dl-{n}", lines, ttl_s=1 if n % 5 == 0 else 60)
            ).reservation
            if n % 5 == 0:
                return  # walks away: the sweeper ends it
            if n % 2:
                await engine.confirm(hold.id)
            else:
                await engine.release(hold.id)

        async def sweeper() -> None:
            for _ in range(10):
                await engine.expire_due()
                await asyncio.sleep(0.2)

        await asyncio.gather(*(buyer(n) for n in range(300)), sweeper())
        await asyncio.sleep(1.1)
        await engine.expire_due()

        assert engine.store.counters["conflict_retries"] == 0
        report = await audit(engine.store)
        assert report.ok, report.violations
        assert (await totals(engine, "DL-A"))[1] == 0 and (await totals(engine, "DL-B"))[1] == 0


class _Picks:
    """Bucket choices in order: the spread-out path's ``random.randrange`` made certain."""

    def __init__(self, picks: list[int]) -> None:
        self.picks = picks

    def randrange(self, count: int) -> int:
        return self.picks.pop(0) % count


async def test_a_line_short_on_its_bucket_does_not_count_the_order_s_own_takes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order of A x1 + B x1, each with its last unit in one bucket: the first line takes
    A's unit, the second tries an empty bucket of B. The order must fall back and be held;
    it was refused as "A: available 0" (its own uncommitted take counted against it), and
    the admission then marked A sold out for everyone (found by the model test)."""
    await engine.set_on_hand("A", 1)
    await engine.set_on_hand("B", 1)
    a_bucket = next(n for n, (on_hand, _) in enumerate(await buckets_of(engine, "A")) if on_hand)
    b_empty = next(n for n, (on_hand, _) in enumerate(await buckets_of(engine, "B")) if not on_hand)
    monkeypatch.setattr(sharded_module, "random", _Picks([a_bucket, b_empty]))

    held = await engine.reserve("both", [("A", 1), ("B", 1)])

    assert held.created
    assert await totals(engine, "A") == (1, 1)
    assert await totals(engine, "B") == (1, 1)
    report = await audit(engine.store)
    assert report.violations == []
