"""`stockguard serve --workers 2` with the redis and queue strategies, end to end.

Two granian worker processes share one keyspace (``STOCKGUARD_REDIS_PREFIX``): each runs
a persister (redis) or partition workers (queue), one active at a time by lease. Buyers
race over HTTP; after a graceful stop the SQL tables alone must hold exactly what was
answered, and audit clean.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from redis_support import new_prefix, redis_engine
from service.support import bearer, run_serve
from stockguard.stores.redis.client import drop_keyspace
from stockguard.stores.redis.reconcile import reconcile
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit
from stockguard.stores.sql.store import SqlStore
from stockguard.strategies.redis import RedisStrategy

pytestmark = pytest.mark.asyncio

ADMIN = "admin-token-for-redis-tests"


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("strategy", ["redis", "queue"])
async def test_two_workers_sell_exactly_the_stock_and_sql_holds_every_answer(
    db_url: str, redis_url: str, strategy: str, tmp_path: Path
) -> None:
    prefix = new_prefix()
    env = {
        "STOCKGUARD_DATABASE_URL": db_url,
        "STOCKGUARD_REDIS_URL": redis_url,
        "STOCKGUARD_REDIS_PREFIX": prefix,
        "STOCKGUARD_STRATEGY": strategy,
        "STOCKGUARD_ADMIN_TOKEN": ADMIN,
        "STOCKGUARD_POOL_SIZE": "5",
    }
    try:
        with run_serve(tmp_path, "--workers", "2", env=env) as served:
            async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
                answer = await client.put(
                    "/v1/stock/HOT", json={"on_hand": 50}, headers=bearer(ADMIN)
                )
                assert answer.status_code == 200, answer.text

                async def buy(n: int) -> tuple[int, str | None]:
                    answer = await client.post(
                        "/v1/reservations",
                        json={"order_id": f"http-{n}", "items": [{"sku": "HOT", "quantity": 1}]},
                    )
                    held = answer.json()["id"] if answer.status_code == 201 else None
                    return answer.status_code, held

                results = await asyncio.gather(*(buy(n) for n in range(200)))
                statuses = Counter(status for status, _ in results)
                assert statuses == {201: 50, 409: 150}, statuses
                held = [rid for _, rid in results if rid]
                for rid in held[:10]:
                    answer = await client.post(f"/v1/reservations/{rid}/confirm")
                    assert answer.status_code == 200, answer.text
                stock = (await client.get("/v1/stock/HOT")).json()
                assert (stock["on_hand"], stock["reserved"]) == (40, 40)
            assert served.stop() == 0, served.output()[-3000:]
            # Two workers racing to load Redis at start is expected: INFO, never WARNING.
            for line in served.output().splitlines():
                if "loading Redis" in line:
                    assert json.loads(line)["level"] == "info", line

        store = SqlStore.open(db_url, pool_size=1)
        try:
            async with store.transaction(read_only=True) as tx:
                rows = await tx.connection.execute(
                    select(t.reservations.c.status, func.count()).group_by(t.reservations.c.status)
                )
                by_status = {status: int(count) for status, count in rows}
            assert by_status == {"held": 40, "confirmed": 10}
            report = await audit(store)
            assert report.violations == [] and report.oversold_units == 0
        finally:
            await store.close()
        if strategy == "redis":
            async with redis_engine(db_url, redis_url, prefix=prefix) as engine:
                assert isinstance(engine.strategy, RedisStrategy)
                keys = engine.strategy.keys
                consistent = await reconcile(engine.strategy.clients, engine.store, keys)
                assert consistent.consistent, consistent.differences
    finally:
        await drop_keyspace(redis_url, prefix)
