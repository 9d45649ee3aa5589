"""The stock policy under the redis strategy beyond the shared contract: a load from SQL
brings back the safety stock, the caps and the customers' counts (docs/design.md#redis,
docs/design.md#per-customer-caps); a cap set after holds starts from SQL's counts."""

from __future__ import annotations

from typing import cast

import pytest

from redis_support import redis_engine
from stockguard import domain
from stockguard.stores.redis.client import delete_keyspace
from stockguard.stores.redis.reconcile import reconcile
from stockguard.stores.sql.audit import audit
from stockguard.strategies.redis import RedisStrategy

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_reload_from_sql_keeps_safety_stock_caps_and_counts(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        strategy = cast(RedisStrategy, engine.strategy)
        await engine.set_on_hand("K", 10)
        # Holds before the cap: the cap starts from them.
        await engine.reserve("early", [("K", 1)], customer_id="ann")
        await engine.set_policy("K", domain.Policy(safety_stock=3, customer_max=2))
        await engine.reserve("second", [("K", 1)], customer_id="ann")
        with pytest.raises(domain.CustomerLimit):
            await engine.reserve("third", [("K", 1)], customer_id="ann")
        await strategy.settle()

        await delete_keyspace(strategy.clients.commands, strategy.keys)
        report = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert report.loaded is not None

        assert (await engine.stock_of("K")).available == 5  # 10 - 2 held - 3 safety
        with pytest.raises(domain.CustomerLimit):
            await engine.reserve("fourth", [("K", 1)], customer_id="ann")
        with pytest.raises(domain.InvalidInput):
            await engine.reserve("anonymous", [("K", 1)])
        await engine.reserve("bob", [("K", 2)], customer_id="bob")
        await engine.reserve("carl", [("K", 2)], customer_id="carl")
        with pytest.raises(domain.OutOfStock):
            await engine.reserve("dora", [("K", 2)], customer_id="dora")  # 1 left, 3 kept
        # Releasing gives the count back; removing the cap forgets it.
        early = await engine.reserve("early", [("K", 1)], customer_id="ann")
        await engine.release(early.reservation.id)
        await engine.reserve("fifth", [("K", 1)], customer_id="ann")
        await engine.set_policy("K", domain.Policy())
        await engine.reserve("sixth", [("K", 3)], customer_id="ann")
        await strategy.settle()
        assert (await audit(engine.store)).violations == []
