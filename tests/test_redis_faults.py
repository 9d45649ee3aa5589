"""The redis and queue strategies under faults: a killed persister, a wiped keyspace under
load, and Redis going down and coming back while the engine keeps running.

The machine's Redis is only ever touched inside a keyspace of the test's own; to take
Redis down, a test starts a redis-server of its own and kills that.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import cast

import httpx
import pytest
from sqlalchemy import func, select

from redis_support import free_port, new_prefix, own_redis, redis_engine
from stockguard import domain
from stockguard.config import Settings
from stockguard.domain import Status
from stockguard.engine import Engine
from stockguard.service import create_app
from stockguard.stores.redis.client import delete_keyspace
from stockguard.stores.redis.reconcile import reconcile
from stockguard.stores.redis.sql_apply import read_offset
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit
from stockguard.strategies.redis import RedisStrategy

pytestmark = pytest.mark.asyncio

WAIT_S_MAX = 30.0


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def redis_of(engine: Engine) -> RedisStrategy:
    return cast(RedisStrategy, engine.strategy)


async def persisted_position(engine: Engine) -> str:
    strategy = redis_of(engine)
    async with engine.store.transaction(read_only=True) as tx:
        offset = await read_offset(tx, strategy.keys.events)
    return "" if offset is None else str(offset.last_id)


async def start_persister(
    db_url: str, redis_url: str, prefix: str, *extra: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockguard.cli", "persist",
        "--db", db_url, "--redis", redis_url, "--prefix", prefix, *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def test_a_persister_killed_mid_batch_loses_and_duplicates_nothing(
    db_url: str, redis_url: str
) -> None:
    """Answers are collected with no persister running; then a `stockguard persist`
    process is SIGKILLed as soon as its first batch commits (the next one is in flight),
    twice; a third runs until the stream is drained. Every answered hold, confirm and
    release must then be in SQL exactly once, and the tables must audit clean."""
    async with redis_engine(db_url, redis_url, persister=False) as engine:
        strategy = redis_of(engine)
        prefix = strategy.keys.prefix
        await engine.set_on_hand("K", 1_000_000)
        await engine.set_on_hand("L", 1_000_000)

        sold_lines = 0

        async def buyer(worker: int) -> list[tuple[str, Status]]:
            nonlocal sold_lines
            answered = []
            for n in range(60):
                lines = [("K", 1 + n % 3)] + ([("L", 1)] if n % 4 == 0 else [])
                hold = (await engine.reserve(f"kill-{worker}-{n}", lines)).reservation
                if n % 5 == 0:
                    await engine.confirm(hold.id)
                    answered.append((hold.id, Status.CONFIRMED))
                    sold_lines += len(lines)
                elif n % 5 == 1:
                    await engine.release(hold.id)
                    answered.append((hold.id, Status.RELEASED))
                else:
                    answered.append((hold.id, Status.HELD))
            return answered

        answers = dict(
            pair for batch in await asyncio.gather(*(buyer(w) for w in range(40))) for pair in batch
        )
        newest = await strategy.holds.newest_event()

        for _ in range(2):
            before = await persisted_position(engine)
            child = await start_persister(db_url, redis_url, prefix)
            deadline = time.monotonic() + WAIT_S_MAX
            while await persisted_position(engine) == before:
                assert time.monotonic() < deadline, "the persister never committed"
                await asyncio.sleep(0.005)
            child.send_signal(signal.SIGKILL)
            await child.communicate()
        assert await persisted_position(engine) != str(newest), "nothing was left to persist"

        finisher = await start_persister(db_url, redis_url, prefix, "--until-idle")
        _, stderr = await asyncio.wait_for(finisher.communicate(), WAIT_S_MAX * 4)
        assert finisher.returncode == 0, stderr.decode()[-2000:]

        assert await persisted_position(engine) == str(newest)
        async with engine.store.transaction(read_only=True) as tx:
            rows = (await tx.connection.execute(select(t.reservations))).all()
            sales = (
                await tx.connection.execute(
                    select(func.count())
                    .select_from(t.stock_movements)
                    .where(t.stock_movements.c.reason == "sale")
                )
            ).scalar_one()
        assert len(rows) == len(answers) == 2_400
        assert {row.id: Status(row.status) for row in rows} == answers
        assert sales == sold_lines
        report = await audit(engine.store)
        assert report.violations == [] and report.oversold_units == 0
        assert await strategy.clients.commands.xlen(strategy.keys.dead) == 0
        assert (await reconcile(strategy.clients, engine.store, strategy.keys)).consistent


async def test_wiping_the_keyspace_under_load_stops_sales_until_reconcile_and_never_oversells(
    db_url: str, redis_url: str
) -> None:
    """20 buyers loop on a SKU of 300 units. After 100 holds the test deletes every key of
    the keyspace (as FLUSHDB or a restart without persistence would), waits, then runs
    reconcile. Every request that began and ended while the keyspace was gone must be
    refused with StoreUnavailable; after the reload, sales resume until sold out; SQL never
    holds more than 300 units, audits clean, and agrees with Redis. Holds answered before
    the wipe but not yet persisted are lost with it: counted and reported, never sold twice.
    """
    stock = 300
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        await engine.set_on_hand("HOT", stock)
        await strategy.settle()
        phase = ["before"]
        outcomes: list[tuple[str, str, str, str | None]] = []
        held_ids: list[str] = []
        holds_before_wipe = asyncio.Event()

        async def buyer(worker: int) -> None:
            for n in range(10_000):
                began = phase[0]
                try:
                    hold = (await engine.reserve(f"wipe-{worker}-{n}", [("HOT", 1)])).reservation
                    kind, rid = "held", hold.id
                    held_ids.append(hold.id)
                except domain.OutOfStock:
                    kind, rid = "out-of-stock", None
                except domain.StoreUnavailable:
                    kind, rid = "unavailable", None
                    await asyncio.sleep(0.01)
                outcomes.append((began, phase[0], kind, rid))
                if len(held_ids) >= 100:
                    holds_before_wipe.set()
                if kind == "out-of-stock" and phase[0] == "reloaded":
                    return

        buyers = [asyncio.create_task(buyer(w)) for w in range(20)]
        await asyncio.wait_for(holds_before_wipe.wait(), WAIT_S_MAX)
        await delete_keyspace(strategy.clients.commands, strategy.keys)
        phase[0] = "wiped"
        await asyncio.sleep(0.5)
        phase[0] = "reloading"
        report = await reconcile(strategy.clients, engine.store, strategy.keys)
        phase[0] = "reloaded"
        await asyncio.wait_for(asyncio.gather(*buyers), WAIT_S_MAX * 2)

        kinds = Counter(kind for _, _, kind, _ in outcomes)
        assert set(kinds) <= {"held", "out-of-stock", "unavailable"}
        assert report.loaded is not None
        during = [kind for began, ended, kind, _ in outcomes if began == ended == "wiped"]
        assert during and set(during) == {"unavailable"}
        await strategy.settle()
        audited = await audit(engine.store)
        assert audited.violations == [] and audited.oversold_units == 0
        level = await engine.stock_of("HOT")
        assert (level.on_hand, level.reserved) == (stock, stock)
        in_sql = set((await reservations_by_status(engine))[Status.HELD.value])
        assert len(in_sql) == stock
        lost = set(held_ids) - in_sql
        after_reload = {rid for began, _, kind, rid in outcomes if began == "reloaded" and rid}
        assert after_reload <= in_sql
        assert len(held_ids) - len(lost) == stock
        assert await strategy.clients.commands.xlen(strategy.keys.dead) == 0
        assert (await reconcile(strategy.clients, engine.store, strategy.keys)).consistent
        print(f"wipe under load: {kinds}, {len(lost)} answered hold(s) lost with the wipe")


async def reservations_by_status(engine: Engine) -> dict[str, list[str]]:
    async with engine.store.transaction(read_only=True) as tx:
        rows = await tx.connection.execute(select(t.reservations.c.id, t.reservations.c.status))
        found: dict[str, list[str]] = {status.value: [] for status in Status}
        for row in rows:
            found[row.status].append(row.id)
    return found


@pytest.mark.parametrize("strategy", ["redis", "queue"])
async def test_redis_down_answers_503_and_the_same_engine_recovers_when_it_returns(
    db_url: str, strategy: str, tmp_path: Path
) -> None:
    """The test's own redis-server (AOF on) is SIGKILLed under a running engine: every
    call, in-process and over HTTP, is StoreUnavailable / 503 with Retry-After, never a
    500. Restarted on the same port (its scripts forgotten: NOSCRIPT, reloaded), the
    same engine serves again without a restart."""
    async with own_redis(tmp_path / "redis", appendonly=True, appendfsync="always") as server:
        options = {"reply_wait_s": 2.0} if strategy == "queue" else {}
        async with redis_engine(db_url, server.url, strategy, **options) as engine:
            await engine.set_on_hand("K", 10)
            first = (await engine.reserve("up", [("K", 1)])).reservation
            settings = Settings(
                database_url=db_url, admin_token="admin", api_token=None, migrate=False
            )
            app = create_app(settings, engine=engine)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://stockguard.test"
                ) as client,
            ):
                await server.kill()
                with pytest.raises(domain.StoreUnavailable):
                    await engine.reserve("down", [("K", 1)])
                answer = await client.post(
                    "/v1/reservations",
                    json={"order_id": "down-http", "items": [{"sku": "K", "quantity": 1}]},
                )
                assert answer.status_code == 503, answer.text
                assert int(answer.headers["retry-after"]) >= 1
                # The client's text (address, server message) goes to the log, not the body.
                assert "connecting to" not in answer.text, answer.text
                assert f":{server.port}" not in answer.text, answer.text
                if strategy == "redis":
                    for path in ("/v1/stock/K", f"/v1/reservations/{first.id}"):
                        answer = await client.get(path)
                        assert answer.status_code == 503, answer.text
                    answer = await client.post(f"/v1/reservations/{first.id}/confirm")
                    assert answer.status_code == 503, answer.text

                await server.start()
                deadline = time.monotonic() + WAIT_S_MAX
                while True:
                    answer = await client.post(
                        "/v1/reservations",
                        json={"order_id": "back", "items": [{"sku": "K", "quantity": 1}]},
                    )
                    if answer.status_code == 201 or time.monotonic() > deadline:
                        break
                    assert answer.status_code == 503, answer.text
                    await asyncio.sleep(0.1)
                assert answer.status_code == 201, answer.text
            assert (await engine.confirm(first.id)).status is Status.CONFIRMED
            await engine.strategy.settle()
            assert (await audit(engine.store)).violations == []


async def test_an_engine_opened_while_redis_is_unreachable_starts_and_answers_503(
    db_url: str,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    prefix = new_prefix()
    for strategy in ("redis", "queue"):
        async with redis_engine(db_url, url, strategy, prefix=prefix) as engine:
            with pytest.raises(domain.StoreUnavailable):
                await engine.reserve("o", [("K", 1)])
