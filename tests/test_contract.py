"""The contract every strategy keeps on every backend (docs/design.md#invariants, I1-I4).

Runs once per backend × strategy (see the ``engine`` fixture). Every concurrent test
asserts exact counts from the engine's answers *and* audits the tables directly.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from sqlalchemy import func, select

from stockguard import domain
from stockguard.domain import Line, Status
from stockguard.engine import Engine
from stockguard.stores.memory import MemoryStore
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit, stock_totals

pytestmark = [pytest.mark.asyncio, pytest.mark.memory]


async def settle(engine: Engine) -> None:
    """Before reading tables directly: a write-behind strategy's persister catches up."""
    await engine.strategy.settle()


async def assert_invariants(engine: Engine) -> None:
    await settle(engine)
    report = await audit(engine.store)
    assert report.violations == []
    assert report.oversold_units == 0


async def table_row(engine: Engine, sku: str) -> tuple[int, int]:
    """(on_hand, reserved) read from the tables themselves, not through the strategy.

    A SKU's stock is its stock_levels row plus its stock_buckets rows (sharded strategy).
    """
    await settle(engine)
    if isinstance(engine.store, MemoryStore):
        level = engine.store.state.levels[sku]
        return level.on_hand, level.reserved
    async with engine.store.transaction(read_only=True) as tx:
        totals = (await stock_totals(tx.connection, [sku]))[sku]
    return totals.on_hand, totals.reserved


async def row_counts(engine: Engine) -> dict[str, int]:
    await settle(engine)
    if isinstance(engine.store, MemoryStore):
        state = engine.store.state
        return {
            "stock_levels": len(state.levels),
            "reservations": len(state.reservations),
            "reservation_lines": sum(len(r.lines) for r in state.reservations.values()),
            "stock_movements": len(state.movements),
        }
    async with engine.store.transaction(read_only=True) as tx:
        return {
            table.name: int(
                (await tx.connection.execute(select(func.count()).select_from(table))).scalar_one()
            )
            for table in (t.stock_levels, t.reservations, t.reservation_lines, t.stock_movements)
        }


async def test_500_concurrent_reservations_of_one_unit_sell_exactly_the_100_in_stock(
    engine: Engine,
) -> None:
    """500 buyers race for 100 units with asyncio.gather: 100 holds, 400 refusals."""
    await engine.set_on_hand("HOT", 100)

    async def buy(n: int) -> str:
        try:
            await engine.reserve(f"order-{n}", [("HOT", 1)])
        except domain.OutOfStock as refused:
            assert refused.shortfalls == (domain.Shortfall("HOT", 1, 0),)
            return "out-of-stock"
        return "held"

    outcomes = Counter(await asyncio.gather(*(buy(n) for n in range(500))))

    assert outcomes == {"held": 100, "out-of-stock": 400}
    assert await table_row(engine, "HOT") == (100, 100)
    assert (await engine.stock_of("HOT")).available == 0
    assert (await row_counts(engine))["reservations"] == 100
    await assert_invariants(engine)


async def test_overlapping_multi_line_reservations_hold_all_lines_or_none(engine: Engine) -> None:
    """300 orders of 2-3 lines over 4 SKUs of 40 units race; lines arrive in random order.

    Every order either holds all its lines or none; reserved per SKU equals the sum over
    the granted orders; nothing deadlocks (no order fails with anything but out-of-stock).
    """
    skus = ["A", "B", "C", "D"]
    for sku in skus:
        await engine.set_on_hand(sku, 40)
    rng = random.Random(7)
    orders = [
        [(sku, rng.randint(1, 3)) for sku in rng.sample(skus, rng.randint(2, 3))]
        for _ in range(300)
    ]

    async def place(n: int, lines: list[tuple[str, int]]) -> bool:
        try:
            await engine.reserve(f"multi-{n}", lines)
        except domain.OutOfStock:
            return False
        return True

    granted = await asyncio.gather(*(place(n, lines) for n, lines in enumerate(orders)))

    expected = Counter[str]()
    for ok, lines in zip(granted, orders, strict=True):
        if ok:
            for sku, quantity in lines:
                expected[sku] += quantity
    for sku in skus:
        assert await table_row(engine, sku) == (40, expected[sku])
    assert any(granted) and not all(granted)
    await assert_invariants(engine)


async def test_identical_replay_returns_the_same_reservation(engine: Engine) -> None:
    await engine.set_on_hand("R", 5)
    first = await engine.reserve("order-r", [("R", 2)], customer_id="c-1")
    again = await engine.reserve("order-r", [("R", 2)])

    assert first.created and not again.created
    assert again.reservation.id == first.reservation.id
    assert await table_row(engine, "R") == (5, 2)


async def test_replay_after_sell_out_still_returns_the_original_hold(engine: Engine) -> None:
    await engine.set_on_hand("LAST", 1)
    first = await engine.reserve("order-last", [("LAST", 1)])
    again = await engine.reserve("order-last", [("LAST", 1)])
    assert again.reservation.id == first.reservation.id and not again.created


async def test_same_order_id_with_other_lines_is_a_conflict(engine: Engine) -> None:
    await engine.set_on_hand("R", 5)
    await engine.reserve("order-r", [("R", 2)])
    with pytest.raises(domain.IdempotencyConflict):
        await engine.reserve("order-r", [("R", 3)])
    assert await table_row(engine, "R") == (5, 2)


async def test_concurrent_replays_of_one_order_create_exactly_one_hold(engine: Engine) -> None:
    await engine.set_on_hand("R", 50)
    outcomes = await asyncio.gather(*(engine.reserve("same-order", [("R", 3)]) for _ in range(30)))

    assert sum(o.created for o in outcomes) == 1
    assert len({o.reservation.id for o in outcomes}) == 1
    assert await table_row(engine, "R") == (50, 3)
    await assert_invariants(engine)


async def test_confirm_sells_the_units_and_is_replay_safe(engine: Engine) -> None:
    await engine.set_on_hand("C", 10)
    hold = (await engine.reserve("o", [("C", 4)])).reservation

    confirmed = await engine.confirm(hold.id)
    again = await engine.confirm(hold.id)

    assert confirmed.status is again.status is Status.CONFIRMED
    assert await table_row(engine, "C") == (6, 0)
    await assert_invariants(engine)


async def test_release_returns_the_units_and_is_replay_safe(engine: Engine) -> None:
    await engine.set_on_hand("C", 10)
    hold = (await engine.reserve("o", [("C", 4)])).reservation

    assert (await engine.release(hold.id)).status is Status.RELEASED
    assert (await engine.release(hold.id)).status is Status.RELEASED
    assert await table_row(engine, "C") == (10, 0)


async def test_release_after_confirm_and_confirm_after_release_are_refused(engine: Engine) -> None:
    await engine.set_on_hand("C", 10)
    sold = (await engine.reserve("o1", [("C", 1)])).reservation
    dropped = (await engine.reserve("o2", [("C", 1)])).reservation
    await engine.confirm(sold.id)
    await engine.release(dropped.id)

    with pytest.raises(domain.InvalidState):
        await engine.release(sold.id)
    with pytest.raises(domain.InvalidState):
        await engine.confirm(dropped.id)
    assert await table_row(engine, "C") == (9, 0)
    await assert_invariants(engine)


async def test_unknown_reservation_and_unknown_sku_are_typed_errors(engine: Engine) -> None:
    await engine.set_on_hand("K", 1)
    with pytest.raises(domain.ReservationNotFound):
        await engine.confirm("00000000-0000-0000-0000-000000000000")
    with pytest.raises(domain.UnknownSku) as unknown:
        await engine.reserve("o", [("K", 1), ("NOPE", 1)])
    assert unknown.value.skus == ("NOPE",)
    assert await table_row(engine, "K") == (1, 0)


async def test_out_of_stock_names_every_short_line(engine: Engine) -> None:
    await engine.set_on_hand("X", 2)
    await engine.set_on_hand("Y", 0)
    await engine.set_on_hand("Z", 9)
    with pytest.raises(domain.OutOfStock) as refused:
        await engine.reserve("o", [("Z", 1), ("X", 3), ("Y", 1)])
    assert set(refused.value.shortfalls) == {
        domain.Shortfall("X", 3, 2),
        domain.Shortfall("Y", 1, 0),
    }
    assert await table_row(engine, "Z") == (9, 0)


async def test_expired_holds_are_swept_and_confirmed_ones_stay(engine: Engine) -> None:
    """Holds of 1 s; after 1.2 s the sweep ends the held ones and gives the stock back."""
    await engine.set_on_hand("E", 10)
    short = [
        (await engine.reserve(f"short-{n}", [("E", 2)], ttl_s=1)).reservation for n in range(3)
    ]
    kept = (await engine.reserve("kept", [("E", 1)], ttl_s=1)).reservation
    await engine.confirm(kept.id)
    await asyncio.sleep(1.2)

    assert await engine.expire_due() == 3
    assert await engine.expire_due() == 0
    for hold in short:
        assert (await engine.get_reservation(hold.id)).status is Status.EXPIRED
    assert (await engine.get_reservation(kept.id)).status is Status.CONFIRMED
    assert await table_row(engine, "E") == (9, 0)
    await assert_invariants(engine)


async def test_confirm_after_expiry_is_refused_before_any_sweep(engine: Engine) -> None:
    await engine.set_on_hand("E", 3)
    hold = (await engine.reserve("late", [("E", 3)], ttl_s=1)).reservation
    await asyncio.sleep(1.2)

    with pytest.raises(domain.ReservationExpired):
        await engine.confirm(hold.id)
    assert (await engine.get_reservation(hold.id)).status is Status.EXPIRED
    assert (await engine.release(hold.id)).status is Status.EXPIRED
    assert await table_row(engine, "E") == (3, 0)
    await assert_invariants(engine)


async def test_confirms_racing_the_sweep_end_each_hold_exactly_once(engine: Engine) -> None:
    """40 holds expire at about the same moment; confirms and sweeps race around it.

    Whatever the timing, each hold ends exactly once: confirmed (its units sold) or
    expired (its units back), and the tables agree with the answers.
    """
    await engine.set_on_hand("RACE", 40)
    holds = [
        (await engine.reserve(f"race-{n}", [("RACE", 1)], ttl_s=1)).reservation for n in range(40)
    ]
    async with engine.store.transaction(read_only=True) as tx:
        now_ms = await tx.now_ms()
    middle_expiry_ms = holds[len(holds) // 2].expires_at_ms
    await asyncio.sleep(max(middle_expiry_ms - now_ms - 50, 0) / 1000)

    async def confirm(reservation_id: str) -> bool:
        try:
            await engine.confirm(reservation_id)
        except domain.ReservationExpired:
            return False
        return True

    async def sweep() -> None:
        for _ in range(10):
            await engine.expire_due()
            await asyncio.sleep(0.03)

    results = await asyncio.gather(*(confirm(h.id) for h in holds), sweep(), sweep())
    confirmed = sum(1 for ok in results[:40] if ok)
    await engine.expire_due()

    statuses = Counter([(await engine.get_reservation(h.id)).status for h in holds])
    assert statuses[Status.CONFIRMED] == confirmed
    assert statuses[Status.EXPIRED] == 40 - confirmed
    assert await table_row(engine, "RACE") == (40 - confirmed, 0)
    await assert_invariants(engine)


async def test_admin_save_over_a_sale_is_refused_seed_001(engine: Engine) -> None:
    """Form opened at 12; one unit sells; saving 12 with expected 12 changes nothing."""
    await engine.set_on_hand("SHIRT", 12)
    form_on_hand = (await engine.stock_of("SHIRT")).on_hand
    sale = (await engine.reserve("buyer", [("SHIRT", 1)])).reservation
    await engine.confirm(sale.id)

    with pytest.raises(domain.StockChanged) as changed:
        await engine.set_on_hand("SHIRT", 12, expected_on_hand=form_on_hand)
    assert changed.value.current.on_hand == 11
    assert await table_row(engine, "SHIRT") == (11, 0)

    reapplied = await engine.set_on_hand("SHIRT", 20, expected_on_hand=11)
    assert reapplied.on_hand == 20
    await assert_invariants(engine)


async def test_on_hand_below_reserved_is_refused(engine: Engine) -> None:
    await engine.set_on_hand("B", 10)
    await engine.reserve("o", [("B", 6)])
    with pytest.raises(domain.BelowReserved):
        await engine.set_on_hand("B", 5)
    with pytest.raises(domain.BelowReserved):
        await engine.adjust("B", -5, "damaged")
    assert await table_row(engine, "B") == (10, 6)
    level = await engine.adjust("B", -4, "damaged")
    assert (level.on_hand, level.reserved) == (6, 6)
    await assert_invariants(engine)


async def test_every_on_hand_change_is_in_the_ledger(engine: Engine) -> None:
    await engine.set_on_hand("L", 10)
    await engine.adjust("L", 5, "delivery")
    await engine.set_on_hand("L", 12, expected_on_hand=15)
    await engine.confirm((await engine.reserve("o", [("L", 2)])).reservation.id)

    await settle(engine)
    ledger, _ = await engine.movements("L")
    assert [(m.delta, m.on_hand_after, m.reason) for m in ledger] == [
        (-2, 10, "sale"),
        (-3, 12, "set"),
        (5, 15, "delivery"),
        (10, 10, "created"),
    ]
    await assert_invariants(engine)


HOSTILE_RESERVATIONS: list[tuple[str, list[tuple[str, int]], int]] = [
    ("o", [("H", 0)], 60),
    ("o", [("H", -1)], 60),
    ("o", [("H", 1_000_001)], 60),
    ("o", [("H", 10**30)], 60),
    ("o", [], 60),
    ("o", [(f"S{n}", 1) for n in range(101)], 60),
    ("o", [("H", 1), ("H", 1)], 60),
    ("o", [("H\x00", 1)], 60),
    ("o", [("x" * 65, 1)], 60),
    ("o", [("", 1)], 60),
    ("o", [("H", True)], 60),
    ("", [("H", 1)], 60),
    ("o" * 129, [("H", 1)], 60),
    ("o", [("H", 1)], 0),
    ("o", [("H", 1)], 86_401),
]


async def test_hostile_reservation_input_is_refused_and_writes_nothing(engine: Engine) -> None:
    """Each hostile request in turn (zero, negative and huge quantities, 0 or 101 lines, a
    SKU twice, NUL and 65-character SKUs, bad order ids and TTLs): InvalidInput, no row."""
    await engine.set_on_hand("H", 5)
    before = await row_counts(engine)
    for order_id, lines, ttl_s in HOSTILE_RESERVATIONS:
        with pytest.raises(domain.InvalidInput):
            await engine.reserve(order_id, lines, ttl_s=ttl_s)
    assert await row_counts(engine) == before
    assert await table_row(engine, "H") == (5, 0)


async def test_hostile_admin_input_is_refused_and_writes_nothing(engine: Engine) -> None:
    await engine.set_on_hand("H", 5)
    before = await row_counts(engine)
    for call in (
        engine.set_on_hand("H", -1),
        engine.set_on_hand("H", 10**12 + 1),
        engine.set_on_hand("H\x00", 1),
        engine.adjust("H", 0, "nothing"),
        engine.adjust("H", 1, ""),
        engine.adjust("H", 10**12, "too much"),
    ):
        with pytest.raises(domain.InvalidInput):
            await call
    assert await row_counts(engine) == before


async def test_product_with_options_gets_one_sku_per_combination(engine: Engine) -> None:
    product = await engine.create_product(
        "Tee", options={"size": ["S", "M", "L"], "colour": ["red", "blue"]}, initial_on_hand=3
    )
    assert len(product.variants) == 6
    assert {v.sku for v in product.variants} >= {"TEE-S-RED", "TEE-L-BLUE"}
    held = await engine.reserve("o", [("TEE-M-RED", 3)])
    await engine.confirm(held.reservation.id)

    reread = await engine.get_product(product.id)
    stock = {v.sku: v.stock.on_hand for v in reread.variants}
    assert stock["TEE-M-RED"] == 0 and stock["TEE-M-BLUE"] == 3
    await assert_invariants(engine)


async def test_product_without_options_is_exactly_one_sku(engine: Engine) -> None:
    product = await engine.create_product("Poster", initial_on_hand=7)
    assert [(v.sku, dict(v.options), v.stock.on_hand) for v in product.variants] == [
        ("POSTER", {}, 7)
    ]
    with pytest.raises(domain.DuplicateSku):
        await engine.create_product("Poster")


async def test_explicit_variants_keep_their_skus_and_stock(engine: Engine) -> None:
    product = await engine.create_product(
        "Cap",
        options={"colour": ["black", "white"]},
        variants=[
            domain.VariantSpec("CAP-BLK", {"colour": "black"}, 4),
            domain.VariantSpec("CAP-WHT", {"colour": "white"}, 0),
        ],
    )
    assert [(v.sku, v.stock.on_hand) for v in product.variants] == [("CAP-BLK", 4), ("CAP-WHT", 0)]
    with pytest.raises(domain.OutOfStock):
        await engine.reserve("o", [Line("CAP-WHT", 1)])
