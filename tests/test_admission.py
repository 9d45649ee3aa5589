"""Admission control: in-flight caps and the sold-out fast path, in front of a strategy.

The fast path is checked through its counters: a request it answers never reaches the
strategy (``passed`` does not move, the coalescing writer sees no request), and its
order_id look-ups are shared (``lookups`` grows by far less than ``fastpath``).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from stockguard import domain
from stockguard.admission import AdmissionLimits
from stockguard.engine import Engine


def fastpath_metric() -> float:
    """The exported counter, read the way a Prometheus scrape sees it."""
    return REGISTRY.get_sample_value("stockguard_soldout_fastpath_total") or 0.0


async def sell_out(engine: Engine, sku: str, units: int) -> list[domain.Reservation]:
    """Holds every unit, then one refusal through the strategy marks the SKU sold out."""
    await engine.set_on_hand(sku, units)
    holds = [(await engine.reserve(f"{sku}-{n}", [(sku, 1)])).reservation for n in range(units)]
    with pytest.raises(domain.OutOfStock):
        await engine.reserve(f"{sku}-marker", [(sku, 1)])
    assert engine.admission.is_sold_out(sku)
    return holds


async def test_after_sell_out_refusals_never_reach_the_strategy(db_url: str) -> None:
    async with await Engine.open(db_url, "coalescing", migrate=False) as engine:
        await sell_out(engine, "HOT", 5)
        passed = engine.admission.counters["passed"]
        written = engine.strategy.counters["coalescing_requests"]
        fastpath_before = fastpath_metric()

        refusals = await asyncio.gather(
            *(engine.reserve(f"late-{n}", [("HOT", 1)]) for n in range(200)),
            return_exceptions=True,
        )

        assert all(isinstance(r, domain.OutOfStock) for r in refusals)
        assert all(
            r.shortfalls == (domain.Shortfall("HOT", 1, 0),)
            for r in refusals
            if isinstance(r, domain.OutOfStock)
        )
        assert engine.admission.counters["passed"] == passed
        assert engine.strategy.counters["coalescing_requests"] == written
        assert engine.admission.counters["fastpath"] == 200
        assert engine.admission.counters["lookups"] < 200 / 10
        assert fastpath_metric() - fastpath_before == 200
        assert (await engine.stock_of("HOT")).reserved == 5


async def test_a_replay_after_sell_out_still_returns_the_original_hold(db_url: str) -> None:
    async with await Engine.open(db_url, "conditional", migrate=False) as engine:
        holds = await sell_out(engine, "LAST", 2)

        again = await engine.reserve("LAST-1", [("LAST", 1)])
        with pytest.raises(domain.IdempotencyConflict):
            await engine.reserve("LAST-0", [("LAST", 2)])

        assert not again.created
        assert again.reservation.id == holds[1].id
        assert engine.admission.counters["fastpath"] == 2


async def test_a_fast_path_refusal_names_every_short_line(db_url: str) -> None:
    async with await Engine.open(db_url, "conditional", migrate=False) as engine:
        await sell_out(engine, "GONE", 1)
        await engine.set_on_hand("FEW", 2)
        await engine.set_on_hand("MANY", 9)

        with pytest.raises(domain.OutOfStock) as refused:
            await engine.reserve("cart", [("MANY", 1), ("GONE", 1), ("FEW", 3)])
        with pytest.raises(domain.UnknownSku):
            await engine.reserve("cart-2", [("GONE", 1), ("NOPE", 1)])

        assert set(refused.value.shortfalls) == {
            domain.Shortfall("GONE", 1, 0),
            domain.Shortfall("FEW", 3, 2),
        }
        assert engine.admission.counters["fastpath"] == 2


@pytest.mark.parametrize("strategy", ["conditional", "coalescing", "sharded"])
async def test_a_release_brings_the_sku_back_at_once(db_url: str, strategy: str) -> None:
    async with await Engine.open(db_url, strategy, migrate=False) as engine:
        holds = await sell_out(engine, "BACK", 3)
        await engine.release(holds[0].id)

        assert not engine.admission.is_sold_out("BACK")
        assert (await engine.reserve("returning", [("BACK", 1)])).created


async def test_stock_added_by_an_admin_brings_the_sku_back_at_once(db_url: str) -> None:
    async with await Engine.open(db_url, "coalescing", migrate=False) as engine:
        await sell_out(engine, "ADD", 1)
        await engine.adjust("ADD", 4, "delivery")
        assert (await engine.reserve("after-delivery", [("ADD", 2)])).created


async def test_stock_returned_by_another_process_is_seen_within_the_ttl(db_url: str) -> None:
    """Two engines stand for two processes: B's release cannot reach A's mark, so A keeps
    refusing from memory until its mark is ``sold_out_ttl_ms`` old, then sells again."""
    limits = AdmissionLimits(sold_out_ttl_ms=300)
    async with (
        await Engine.open(db_url, "coalescing", migrate=False, admission=limits) as a,
        await Engine.open(db_url, "coalescing", migrate=False, admission=limits) as b,
    ):
        holds = await sell_out(a, "TWO", 2)
        await b.release(holds[0].id)

        with pytest.raises(domain.OutOfStock):
            await a.reserve("still-stale", [("TWO", 1)])
        assert a.admission.counters["fastpath"] == 1
        await asyncio.sleep(0.35)
        assert (await a.reserve("fresh-again", [("TWO", 1)])).created


async def test_in_flight_caps_answer_overloaded_with_retry_after(db_url: str) -> None:
    limits = AdmissionLimits(in_flight_max=8, in_flight_per_sku_max=4, retry_after_s=2)
    async with await Engine.open(db_url, "coalescing", migrate=False, admission=limits) as engine:
        await engine.set_on_hand("CAP", 100)
        await engine.set_on_hand("OTHER", 100)

        async def buy(n: int, sku: str) -> str:
            try:
                await engine.reserve(f"{sku}-{n}", [(sku, 1)])
            except domain.Overloaded as busy:
                assert busy.retry_after_s == 2
                return "overloaded"
            return "held"

        one_sku = Counter(await asyncio.gather(*(buy(n, "CAP") for n in range(10))))
        both = Counter(
            await asyncio.gather(*(buy(n, sku) for n in range(10, 20) for sku in ("CAP", "OTHER")))
        )

        assert one_sku == {"held": 4, "overloaded": 6}
        assert both == {"held": 8, "overloaded": 12}
        assert engine.admission.in_flight == 0
        assert (await engine.stock_of("CAP")).reserved + (
            await engine.stock_of("OTHER")
        ).reserved == 12


async def test_admission_off_passes_everything_to_the_strategy(db_url: str) -> None:
    async with await Engine.open(
        db_url, "conditional", migrate=False, admission=AdmissionLimits.off()
    ) as engine:
        await engine.set_on_hand("OFF", 1)
        await engine.reserve("first", [("OFF", 1)])
        for n in range(3):
            with pytest.raises(domain.OutOfStock):
                await engine.reserve(f"n-{n}", [("OFF", 1)])
        assert engine.admission.counters["fastpath"] == 0
        assert engine.admission.counters["passed"] == 4


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_strategy_answering_after_its_sql_commit_gets_the_sold_out_fast_path(
    engine: Engine, strategy: str
) -> None:
    """The capability is declared by the strategy (``write_behind``), not guessed from what
    it requires: ``queue`` needs Redis yet answers after its SQL commit, and once lost the
    fast path to a ``"redis" in requires`` test."""
    await engine.set_on_hand("GONE", 1)
    await engine.reserve("first", [("GONE", 1)])
    for n in range(5):
        with pytest.raises(domain.OutOfStock):
            await engine.reserve(f"late-{n}", [("GONE", 1)])

    fast = engine.admission.counters["fastpath"]
    if engine.strategy.write_behind:
        assert fast == 0
    else:
        assert fast >= 4, (strategy, dict(engine.admission.counters))
