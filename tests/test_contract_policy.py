"""A SKU's stock policy (issue 15): safety stock and per-customer caps, on every strategy
and backend (docs/design.md#stock-policy, #safety-stock, #per-customer-caps).

The same fixtures as tests/test_contract.py (one engine per backend x strategy); every
concurrent case asserts exact counts from the answers, then reads the tables and audits
them (I6: no customer past a cap).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stockguard import domain
from stockguard.engine import Engine
from test_contract import assert_invariants, table_row

pytestmark = [pytest.mark.asyncio, pytest.mark.memory]


async def test_policy_reads_defaults_writes_all_fields_and_refuses_a_stale_expected(
    engine: Engine,
) -> None:
    await engine.set_on_hand("P", 10)
    assert await engine.get_policy("P") == domain.Policy()
    wanted = domain.Policy(safety_stock=2, customer_max=3, low_stock_threshold=4)
    assert await engine.set_policy("P", wanted, expected=domain.Policy()) == wanted
    assert await engine.get_policy("P") == wanted
    assert await engine.low_stock_threshold("P") == 4  # the events work's field, shared
    assert (await engine.stock_of("P")).available == 8

    with pytest.raises(domain.PolicyChanged) as changed:
        await engine.set_policy("P", domain.Policy(), expected=domain.Policy())
    assert changed.value.current == wanted
    assert await engine.get_policy("P") == wanted
    with pytest.raises(domain.InvalidInput):
        await engine.set_policy("P", domain.Policy(backorder_max=-5))
    with pytest.raises(domain.UnknownSku):
        await engine.set_policy("NOPE", wanted)
    await engine.set_policy("P", domain.Policy())  # no expected: unconditional
    assert (await engine.stock_of("P")).available == 10


async def test_safety_stock_is_never_held_by_200_concurrent_buyers(engine: Engine) -> None:
    """100 on hand, 30 of them safety stock: 200 buyers of one unit get exactly 70."""
    await engine.set_on_hand("SAFE", 100)
    await engine.set_policy("SAFE", domain.Policy(safety_stock=30))

    async def buy(n: int) -> str:
        try:
            await engine.reserve(f"safe-{n}", [("SAFE", 1)])
        except domain.OutOfStock as refused:
            assert refused.shortfalls == (domain.Shortfall("SAFE", 1, 0),)
            return "out-of-stock"
        return "held"

    outcomes = Counter(await asyncio.gather(*(buy(n) for n in range(200))))

    assert outcomes == {"held": 70, "out-of-stock": 130}
    assert await table_row(engine, "SAFE") == (100, 70)
    assert (await engine.stock_of("SAFE")).available == 0
    # Lowering the safety stock gives its units to the sale at once.
    await engine.set_policy("SAFE", domain.Policy(safety_stock=25))
    assert (await engine.stock_of("SAFE")).available == 5
    await engine.reserve("safe-after", [("SAFE", 5)])
    await assert_invariants(engine)


async def test_one_customer_racing_50_orders_holds_exactly_the_cap(engine: Engine) -> None:
    await engine.set_on_hand("CAP", 1_000)
    await engine.set_policy("CAP", domain.Policy(customer_max=3))

    async def order(n: int) -> str:
        try:
            await engine.reserve(f"bot-{n}", [("CAP", 1)], customer_id="bot")
        except domain.CustomerLimit as refused:
            assert (refused.sku, refused.limit, refused.requested) == ("CAP", 3, 1)
            return "customer-limit"
        return "held"

    outcomes = Counter(await asyncio.gather(*(order(n) for n in range(50))))

    assert outcomes == {"held": 3, "customer-limit": 47}
    assert await table_row(engine, "CAP") == (1_000, 3)
    # A replay of a granted order is still its replay, not a refusal.
    granted = [n for n in range(50) if await _held(engine, f"bot-{n}")]
    assert len(granted) == 3
    again = await engine.reserve(f"bot-{granted[0]}", [("CAP", 1)], customer_id="bot")
    assert not again.created
    with pytest.raises(domain.InvalidInput):
        await engine.reserve("anonymous", [("CAP", 1)])
    # Released units count no more; confirmed ones do.
    first = await engine.reserve(f"bot-{granted[0]}", [("CAP", 1)], customer_id="bot")
    await engine.release(first.reservation.id)
    second = await engine.reserve("bot-again", [("CAP", 1)], customer_id="bot")
    await engine.confirm(second.reservation.id)
    with pytest.raises(domain.CustomerLimit):
        await engine.reserve("bot-more", [("CAP", 1)], customer_id="bot")
    await assert_invariants(engine)


async def test_caps_across_many_customers_are_exact(engine: Engine) -> None:
    """20 customers x 5 orders of one unit, cap 2, mixed with uncapped lines: each
    customer ends with exactly 2 of the capped SKU; the uncapped SKU is unaffected."""
    await engine.set_on_hand("DROP", 500)
    await engine.set_on_hand("FREE", 500)
    await engine.set_policy("DROP", domain.Policy(customer_max=2))

    async def order(customer: int, n: int) -> tuple[int, str]:
        try:
            await engine.reserve(
                f"c{customer}-{n}", [("DROP", 1), ("FREE", 1)], customer_id=f"c{customer}"
            )
        except domain.CustomerLimit:
            return customer, "customer-limit"
        return customer, "held"

    results = await asyncio.gather(*(order(c, n) for n in range(5) for c in range(20)))

    per_customer = Counter(customer for customer, outcome in results if outcome == "held")
    assert per_customer == {c: 2 for c in range(20)}
    assert await table_row(engine, "DROP") == (500, 40)
    assert await table_row(engine, "FREE") == (500, 40)
    await assert_invariants(engine)


async def _held(engine: Engine, order_id: str) -> bool:
    """Whether ``order_id`` holds stock (a listing by order_id, as an admin would ask)."""
    found, _ = await engine.store.list_reservations(order_id=order_id)
    return bool(found)
