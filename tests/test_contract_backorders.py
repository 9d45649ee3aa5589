"""Backorders on purpose, bounded (issue 15 item 3, docs/design.md#backorders), on every
strategy and backend: holds may take ``reserved`` up to ``on_hand + backorder_max``, each
hold's lines say how many of their units are backordered, confirming them takes on_hand
below zero (the ledger records it), and restocking covers that first.

The same fixtures as tests/test_contract.py (one engine per backend x strategy); the
concurrent case asserts exact counts from the answers, then reads the tables and audits
them (I1 with the allowance).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stockguard import domain
from stockguard.engine import Engine
from test_contract import assert_invariants, table_row

pytestmark = [pytest.mark.asyncio, pytest.mark.memory]


def backordered(reservation: domain.Reservation) -> dict[str, int]:
    return {line.sku: line.backordered for line in reservation.lines}


async def test_backorder_is_exactly_bounded_under_500_concurrent_buyers(engine: Engine) -> None:
    """100 on hand and 50 allowed beyond: 500 buyers of one unit get exactly 150, and
    exactly 50 of the held units say they are backordered."""
    await engine.set_on_hand("BO", 100)
    await engine.set_policy("BO", domain.Policy(backorder_max=50))
    assert (await engine.stock_of("BO")).available == 150

    async def buy(n: int) -> domain.Reservation | None:
        try:
            return (await engine.reserve(f"bo-{n}", [("BO", 1)])).reservation
        except domain.OutOfStock as refused:
            assert refused.shortfalls == (domain.Shortfall("BO", 1, 0),)
            return None

    held = [r for r in await asyncio.gather(*(buy(n) for n in range(500))) if r is not None]

    assert len(held) == 150
    assert Counter(backordered(r)["BO"] for r in held) == {0: 100, 1: 50}
    assert await table_row(engine, "BO") == (100, 150)
    assert (await engine.stock_of("BO")).available == 0
    await assert_invariants(engine)

    # Every hold paid: on_hand goes 50 below zero, recorded sale by sale in the ledger.
    for reservation in held:
        await engine.confirm(reservation.id)
    assert await table_row(engine, "BO") == (-50, 0)
    page, _ = await engine.movements("BO", limit=domain.PAGE_LIMIT_MAX)
    sales = [m for m in page if m.reason == "sale"]
    assert len(sales) == 150
    assert min(m.on_hand_after for m in sales) == -50
    await assert_invariants(engine)

    # Restocking covers the backorders first: 80 received leave 30 on the shelf, and the
    # allowance stands again above them.
    await engine.adjust("BO", 80, "received")
    assert await table_row(engine, "BO") == (30, 0)
    assert (await engine.stock_of("BO")).available == 80
    await assert_invariants(engine)


async def test_a_hold_across_the_shelf_edge_reports_only_its_part_beyond(engine: Engine) -> None:
    """3 on the shelf, 5 allowed: a hold of 5 has 2 backordered; its replay says the same;
    a multi-line order backorders only the SKU that lacks stock; safety stock is not
    shelf stock."""
    await engine.set_on_hand("EDGE", 3)
    await engine.set_on_hand("PLAIN", 10)
    await engine.set_policy("EDGE", domain.Policy(backorder_max=5))

    first = await engine.reserve("edge-1", [("EDGE", 5), ("PLAIN", 4)])
    assert backordered(first.reservation) == {"EDGE": 2, "PLAIN": 0}
    replay = await engine.reserve("edge-1", [("EDGE", 5), ("PLAIN", 4)])
    assert not replay.created
    assert backordered(replay.reservation) == {"EDGE": 2, "PLAIN": 0}
    assert backordered(await engine.get_reservation(first.reservation.id)) == backordered(
        first.reservation
    )

    with pytest.raises(domain.OutOfStock) as refused:
        await engine.reserve("edge-2", [("EDGE", 4)])
    assert refused.value.shortfalls == (domain.Shortfall("EDGE", 4, 3),)
    second = await engine.reserve("edge-3", [("EDGE", 3)])
    assert backordered(second.reservation) == {"EDGE": 3}
    assert await table_row(engine, "EDGE") == (3, 8)

    # Safety stock is kept off the shelf: with 2 of 10 kept, a hold of 9 has 1 beyond.
    await engine.set_on_hand("SAFE", 10)
    await engine.set_policy("SAFE", domain.Policy(safety_stock=2, backorder_max=4))
    held = await engine.reserve("safe-1", [("SAFE", 9)])
    assert backordered(held.reservation) == {"SAFE": 1}
    await assert_invariants(engine)


async def test_partial_release_gives_back_backordered_units_first(engine: Engine) -> None:
    await engine.set_on_hand("PART", 2)
    await engine.set_policy("PART", domain.Policy(backorder_max=10))
    held = await engine.reserve("part-1", [("PART", 6)])
    assert backordered(held.reservation) == {"PART": 4}

    after = await engine.release(held.reservation.id, [("PART", 3)])
    assert after.status is domain.Status.HELD
    assert backordered(after) == {"PART": 1}
    assert backordered(await engine.get_reservation(held.reservation.id)) == {"PART": 1}
    assert await table_row(engine, "PART") == (2, 3)
    await assert_invariants(engine)


async def test_the_allowance_and_on_hand_cannot_be_cut_below_what_is_held(
    engine: Engine,
) -> None:
    """I1 with the allowance holds through admin writes: neither a policy write nor an
    on_hand write may leave more held than on_hand + backorder_max."""
    await engine.set_on_hand("CUT", 4)
    await engine.set_policy("CUT", domain.Policy(backorder_max=6))
    await engine.reserve("cut-1", [("CUT", 9)])

    with pytest.raises(domain.BelowReserved):
        await engine.set_policy("CUT", domain.Policy(backorder_max=4))
    assert (await engine.get_policy("CUT")).backorder_max == 6
    with pytest.raises(domain.BelowReserved):
        await engine.set_on_hand("CUT", 2)
    with pytest.raises(domain.BelowReserved):
        await engine.adjust("CUT", -2, "damaged")
    assert await table_row(engine, "CUT") == (4, 9)

    # Down to exactly what is held is allowed, on either side.
    await engine.set_policy("CUT", domain.Policy(backorder_max=5))
    assert (await engine.stock_of("CUT")).available == 0
    await engine.set_policy("CUT", domain.Policy(backorder_max=7))
    await engine.set_on_hand("CUT", 2, expected_on_hand=4)
    assert (await engine.stock_of("CUT")).available == 0
    await assert_invariants(engine)


async def test_backorder_max_out_of_range_is_invalid(engine: Engine) -> None:
    await engine.set_on_hand("RANGE", 1)
    with pytest.raises(domain.InvalidInput):
        await engine.set_policy("RANGE", domain.Policy(backorder_max=-1))
    with pytest.raises(domain.InvalidInput):
        await engine.set_policy("RANGE", domain.Policy(backorder_max=domain.ON_HAND_MAX + 1))
    assert await engine.get_policy("RANGE") == domain.Policy()
