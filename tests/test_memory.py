"""Every transition through the engine on the in-memory store, with a clock the test
moves: no database, no sleeping, milliseconds per test (docs/design.md#reservation-lifecycle).

The contract suite runs on the same store too (the ``memory`` backend of
tests/test_contract.py); this module covers what needs the clock in hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stockguard import domain, strategies
from stockguard.domain import Status
from stockguard.engine import Engine
from stockguard.stores.memory import CheckViolation, MemoryStore

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=strategies.MEMORY_STRATEGIES)
async def engine(clock: Clock, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    store = MemoryStore(clock=clock)
    strategy = strategies.create(str(request.param), store)
    await strategy.start()
    opened = Engine(store, strategy)
    await opened.set_on_hand("A", 10)
    try:
        yield opened
    finally:
        await opened.close()
        report = await opened.audit()
        assert report.violations == [] and report.oversold_units == 0


async def hold(engine: Engine, order_id: str = "o1", quantity: int = 2) -> str:
    outcome = await engine.reserve(order_id, [("A", quantity)], ttl_s=10)
    return outcome.reservation.id


async def levels(engine: Engine) -> tuple[int, int]:
    level = await engine.stock_of("A")
    return level.on_hand, level.reserved


async def test_held_then_confirmed_sells_and_replays(engine: Engine) -> None:
    rid = await hold(engine)
    assert await levels(engine) == (10, 2)
    assert (await engine.confirm(rid)).status is Status.CONFIRMED
    assert (await engine.confirm(rid)).status is Status.CONFIRMED  # replay
    assert await levels(engine) == (8, 0)
    with pytest.raises(domain.InvalidState):
        await engine.release(rid)
    movements, _ = await engine.movements("A")
    assert [m.reason for m in movements] == ["sale", "created"]


async def test_held_then_released_returns_and_replays(engine: Engine) -> None:
    rid = await hold(engine)
    assert (await engine.release(rid)).status is Status.RELEASED
    assert (await engine.release(rid)).status is Status.RELEASED
    assert await levels(engine) == (10, 0)
    with pytest.raises(domain.InvalidState):
        await engine.confirm(rid)


async def test_confirm_at_expiry_is_refused_without_a_sweep(engine: Engine, clock: Clock) -> None:
    rid = await hold(engine)
    clock.now_ms += 9_999
    await engine.get_reservation(rid)
    clock.now_ms += 1  # exactly expires_at: expired (docs/design.md#one-clock)
    with pytest.raises(domain.ReservationExpired):
        await engine.confirm(rid)
    assert (await engine.get_reservation(rid)).status is Status.EXPIRED
    assert await levels(engine) == (10, 0)
    with pytest.raises(domain.ReservationExpired):
        await engine.confirm(rid)
    assert (await engine.release(rid)).status is Status.EXPIRED


async def test_release_past_expiry_ends_expired(engine: Engine, clock: Clock) -> None:
    rid = await hold(engine)
    clock.now_ms += 60_000
    assert (await engine.release(rid)).status is Status.EXPIRED
    assert await levels(engine) == (10, 0)


async def test_the_sweep_expires_only_due_holds(engine: Engine, clock: Clock) -> None:
    early = await hold(engine, "o1")
    clock.now_ms += 5_000
    late = await hold(engine, "o2")
    assert await engine.expire_due() == 0
    clock.now_ms += 5_000
    assert await engine.expire_due() == 1
    assert (await engine.get_reservation(early)).status is Status.EXPIRED
    assert (await engine.get_reservation(late)).status is Status.HELD
    assert await levels(engine) == (10, 2)


async def test_replay_conflict_and_out_of_stock(engine: Engine) -> None:
    rid = await hold(engine, "o1", 8)
    replay = await engine.reserve("o1", [("A", 8)], ttl_s=10)
    assert replay.reservation.id == rid and not replay.created
    with pytest.raises(domain.IdempotencyConflict):
        await engine.reserve("o1", [("A", 1)])
    with pytest.raises(domain.OutOfStock) as refused:
        await engine.reserve("o2", [("A", 3)])
    assert refused.value.shortfalls == (domain.Shortfall("A", 3, 2),)
    with pytest.raises(domain.UnknownSku):
        await engine.reserve("o3", [("NOPE", 1)])


async def test_admin_writes_compare_and_set_and_stay_above_reserved(engine: Engine) -> None:
    await hold(engine, "o1", 4)
    with pytest.raises(domain.StockChanged):
        await engine.set_on_hand("A", 20, expected_on_hand=9)
    with pytest.raises(domain.BelowReserved):
        await engine.set_on_hand("A", 3)
    assert (await engine.adjust("A", -6, "broken")).on_hand == 4
    with pytest.raises(domain.BelowReserved):
        await engine.adjust("A", -1, "broken")


async def test_products_and_listings(engine: Engine) -> None:
    product = await engine.create_product("Tee", {"size": ["S", "M"]}, initial_on_hand=3)
    assert [v.sku for v in product.variants] == ["TEE-S", "TEE-M"]
    with pytest.raises(domain.DuplicateSku):
        await engine.create_product("Tee", {"size": ["S"]})
    assert [p.id for p in await engine.list_products(search="tee-m")] == [product.id]
    assert [lv.sku for lv in await engine.list_standalone_stock()] == ["A"]
    for n in range(3):
        await hold(engine, f"o{n}", 1)
    page, cursor = await engine.list_reservations(limit=2)
    assert [r.order_id for r in page] == ["o2", "o1"] and cursor is not None
    rest, end = await engine.list_reservations(limit=2, cursor=cursor)
    assert [r.order_id for r in rest] == ["o0"] and end is None


async def test_a_write_past_i1_is_refused_by_the_store_itself(clock: Clock) -> None:
    store = MemoryStore(clock=clock)
    await store.set_on_hand("A", 1)
    async with store.transaction() as tx:
        with pytest.raises(CheckViolation):
            await tx.add_reserved({"A": 2}, await tx.now_ms())


async def test_engine_open_takes_a_memory_url() -> None:
    async with await Engine.open("memory://", "conditional") as engine:
        await engine.set_on_hand("A", 1)
        await engine.reserve("o1", [("A", 1)])
        assert (await engine.audit()).ok
