"""The redis strategy beyond the shared contract: load marker, persister, fences, drift.

Every test runs against the machine's Redis in a keyspace of its own, and PostgreSQL
(plus SQLite where it is cheap). The persister's work is checked in the SQL tables
themselves after ``settle()``, never through the strategy's own answers.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from redis_support import redis_engine
from stockguard import domain
from stockguard.domain import Status
from stockguard.engine import Engine
from stockguard.stores.redis.client import delete_keyspace
from stockguard.stores.redis.codec import StreamId
from stockguard.stores.redis.persister import Persister
from stockguard.stores.redis.reconcile import reconcile
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit
from stockguard.strategies.redis import RedisStrategy

pytestmark = pytest.mark.asyncio

WAIT_S_MAX = 10.0


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def redis_of(engine: Engine) -> RedisStrategy:
    return cast(RedisStrategy, engine.strategy)


async def sql_reservations(engine: Engine) -> dict[str, str]:
    """id → status, from the table."""
    async with engine.store.transaction(read_only=True) as tx:
        rows = await tx.connection.execute(select(t.reservations.c.id, t.reservations.c.status))
        return {row.id: row.status for row in rows}


async def eventually(condition: Any, what: str) -> None:
    """Polls ``condition()`` (bounded) for background work that has no event to await."""
    deadline = time.monotonic() + WAIT_S_MAX
    while not await condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


async def test_an_emptied_keyspace_refuses_every_call_until_reconcile_loads_it(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        await engine.set_on_hand("K", 10)
        kept = (await engine.reserve("before", [("K", 3)])).reservation
        await strategy.settle()

        await delete_keyspace(strategy.clients.commands, strategy.keys)
        for call in (
            engine.reserve("during", [("K", 1)]),
            engine.confirm(kept.id),
            engine.stock(["K"]),
            engine.set_on_hand("K", 20),
            engine.expire_due(),
        ):
            with pytest.raises(domain.StoreUnavailable):
                await call

        report = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert report.loaded is not None and report.loaded.skus == 1 and report.loaded.held == 1
        assert (await engine.stock_of("K")).reserved == 3
        assert (await engine.confirm(kept.id)).status is Status.CONFIRMED
        replay = await engine.reserve("before", [("K", 3)])
        assert replay.reservation.id == kept.id and not replay.created
        await strategy.settle()
        assert (await audit(engine.store)).violations == []


async def test_reserve_all_or_nothing_leaves_the_first_line_untouched_when_the_last_is_short(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        await engine.set_on_hand("A", 5)
        await engine.set_on_hand("Z", 1)
        with pytest.raises(domain.OutOfStock):
            await engine.reserve("o", [("A", 2), ("Z", 2)])
        assert [lv.reserved for lv in await engine.stock(["A", "Z"])] == [0, 0]


async def test_a_reservation_dropped_from_redis_is_answered_from_sql(
    db_url: str, redis_url: str
) -> None:
    """What the retention does an hour after a reservation ended, done at once: the hash
    goes, the order index stays; reads, replays and confirms then use SQL's final row."""
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        await engine.set_on_hand("K", 5)
        sold = (await engine.reserve("o-1", [("K", 2)])).reservation
        await engine.confirm(sold.id)
        await strategy.settle()
        await strategy.clients.commands.delete(strategy.keys.reservation(sold.id))

        assert (await engine.get_reservation(sold.id)).status is Status.CONFIRMED
        assert (await engine.confirm(sold.id)).status is Status.CONFIRMED
        with pytest.raises(domain.InvalidState):
            await engine.release(sold.id)
        replay = await engine.reserve("o-1", [("K", 2)])
        assert replay.reservation.id == sold.id and not replay.created
        with pytest.raises(domain.IdempotencyConflict):
            await engine.reserve("o-1", [("K", 1)])


async def test_a_batch_persisted_twice_is_written_once(db_url: str, redis_url: str) -> None:
    """A persister that crashed after its commit but before its ack hands the same
    entries to the next one. Here the same entries are simply persisted twice."""
    async with redis_engine(db_url, redis_url, persister=False) as engine:
        strategy = redis_of(engine)
        await engine.set_on_hand("K", 50)
        holds = [(await engine.reserve(f"o-{n}", [("K", 2)])).reservation for n in range(10)]
        await engine.confirm(holds[0].id)
        await engine.release(holds[1].id)
        await engine.adjust("K", 5, "delivery")
        entries = await strategy.clients.commands.xrange(strategy.keys.events, "-", "+")
        persister = Persister(strategy.clients, engine.store, strategy.keys)
        assert await persister.step() == len(entries)
        before = await audit(engine.store), await sql_reservations(engine)

        await persister._persist(entries)

        assert (await audit(engine.store), await sql_reservations(engine)) == before
        assert before[0].violations == []
        assert persister.dead_letters == 0
        assert len(before[1]) == 10


async def test_poison_events_go_to_the_dead_letter_stream_and_the_rest_is_persisted(
    db_url: str, redis_url: str
) -> None:
    """Two bad entries are appended to the real stream between good ones: one that cannot
    be parsed, one that parses but contradicts SQL (ends a reservation SQL never had)."""
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        events = strategy.keys.events
        await engine.set_on_hand("K", 10)
        await strategy.clients.commands.xadd(events, {"type": "reserved", "id": "no-lines"})
        await strategy.clients.commands.xadd(
            events, {"type": "released", "id": "ghost", "lines": "K\t1", "at": "1", "after": ""}
        )
        hold = (await engine.reserve("after-poison", [("K", 4)])).reservation

        await strategy.settle()

        assert (await sql_reservations(engine)) == {hold.id: "held"}
        dead = await strategy.clients.commands.xrange(strategy.keys.dead, "-", "+")
        assert [fields["dead_entry"] != "" for _, fields in dead] == [True, True]
        assert "ghost" in dead[1][1]["dead_reason"] or "ghost" in dead[1][1]["id"]
        assert REGISTRY.get_sample_value("stockguard_redis_dead_letters") == 2
        assert (await audit(engine.store)).violations == []
        await strategy.clients.commands.delete(strategy.keys.dead)


async def test_persister_lag_is_exported(db_url: str, redis_url: str) -> None:
    async with redis_engine(db_url, redis_url, persister=False) as engine:
        strategy = redis_of(engine)
        await engine.set_on_hand("K", 100)  # event 1
        for n in range(19):
            await engine.reserve(f"o-{n}", [("K", 1)])  # events 2-20
        persister = Persister(strategy.clients, engine.store, strategy.keys, batch_max=5)

        assert await persister.step() == 5

        assert REGISTRY.get_sample_value("stockguard_redis_persist_lag_events") == 15
        assert (REGISTRY.get_sample_value("stockguard_redis_persist_lag_ms") or 0) >= 0


async def test_a_redis_that_lost_persisted_events_is_fenced_until_reloaded(
    db_url: str, redis_url: str
) -> None:
    """Redis restarted from an older AOF (or none) no longer has the last entry SQL
    persisted; its counters are older than SQL's. Emulated by trimming the stream: the
    persister must notice, remove the load marker, and Redis refuses until a reload."""
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        await engine.set_on_hand("K", 10)
        await engine.reserve("o-1", [("K", 4)])
        await strategy.settle()

        await strategy.clients.commands.xtrim(strategy.keys.events, maxlen=0, approximate=False)
        await strategy.clients.commands.hset(strategy.keys.stock("K"), "reserved", 0)

        async def fenced() -> bool:
            return not await strategy.clients.commands.exists(strategy.keys.loaded)

        await eventually(fenced, "the persister fences a Redis that is behind SQL")
        with pytest.raises(domain.StoreUnavailable):
            await engine.reserve("o-2", [("K", 8)])
        await reconcile(strategy.clients, engine.store, strategy.keys)
        assert (await engine.stock_of("K")).reserved == 4
        with pytest.raises(domain.OutOfStock):
            await engine.reserve("o-2", [("K", 8)])


async def test_reconcile_reports_drift_and_repair_removes_it(db_url: str, redis_url: str) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        commands = strategy.clients.commands
        await engine.set_on_hand("A", 10)
        await engine.set_on_hand("B", 10)
        lost = (await engine.reserve("o-1", [("A", 2)])).reservation
        await strategy.settle()
        assert (await reconcile(strategy.clients, engine.store, strategy.keys)).consistent

        await commands.hincrby(strategy.keys.stock("B"), "reserved", 3)
        await commands.delete(strategy.keys.reservation(lost.id))
        await commands.zrem(strategy.keys.due, lost.id)
        await commands.hset(strategy.keys.stock("A"), "reserved", 0)

        found = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert {d.subject for d in found.differences} == {"sku A", "sku B", f"hold {lost.id}"}
        repaired = await reconcile(strategy.clients, engine.store, strategy.keys, repair=True)
        assert repaired.repaired == 3 and repaired.consistent
        assert [(lv.sku, lv.reserved) for lv in await engine.stock(["A", "B"])] == [
            ("A", 2),
            ("B", 0),
        ]
        assert (await engine.confirm(lost.id)).status is Status.CONFIRMED


async def test_mixed_concurrent_traffic_leaves_redis_and_sql_equal(
    db_url: str, redis_url: str
) -> None:
    """Holds, confirms, releases, admin adjustments and set_on_hand race on 5 SKUs; the
    persister runs throughout. Afterwards SQL plus tail equals Redis, and SQL audits."""
    skus = [f"S{n}" for n in range(5)]
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        for sku in skus:
            await engine.set_on_hand(sku, 30)
        rng = random.Random(11)

        async def shopper(n: int) -> None:
            for k in range(15):
                lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(skus, rng.randint(1, 2))]
                try:
                    hold = (await engine.reserve(f"m-{n}-{k}", lines)).reservation
                except domain.OutOfStock:
                    continue
                if rng.random() < 0.5:
                    await engine.confirm(hold.id)
                elif rng.random() < 0.5:
                    await engine.release(hold.id)

        async def admin() -> None:
            for k in range(20):
                sku = rng.choice(skus)
                try:
                    if k % 2:
                        await engine.adjust(sku, rng.randint(1, 5), "delivery")
                    else:
                        level = await engine.stock_of(sku)
                        await engine.set_on_hand(sku, level.on_hand + 1, level.on_hand)
                except (domain.StockChanged, domain.BelowReserved):
                    pass

        await asyncio.gather(*(shopper(n) for n in range(12)), admin())
        await strategy.settle()

        report = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert report.consistent, report.differences
        assert (await audit(engine.store)).violations == []
        async with engine.store.transaction(read_only=True) as tx:
            rows = await tx.connection.execute(
                select(t.stock_levels.c.sku, t.stock_levels.c.on_hand, t.stock_levels.c.reserved)
            )
            sql = {row.sku: (row.on_hand, row.reserved) for row in rows}
        assert sql == {lv.sku: (lv.on_hand, lv.reserved) for lv in await engine.stock(skus)}


async def test_settle_waits_for_a_persister_in_another_engine(db_url: str, redis_url: str) -> None:
    """A process without its own persister (persister=False) still settles: it watches
    the SQL position that another process's persister moves."""
    async with redis_engine(db_url, redis_url, persister=False) as writer:
        prefix = redis_of(writer).keys.prefix
        await writer.set_on_hand("K", 5)
        await writer.reserve("o", [("K", 1)])
        async with redis_engine(db_url, redis_url, prefix=prefix) as _persisting:
            await redis_of(writer).settle()
        async with writer.store.transaction(read_only=True) as tx:
            count = (
                await tx.connection.execute(select(func.count()).select_from(t.reservations))
            ).scalar_one()
        assert count == 1
        newest = await redis_of(writer).holds.newest_event()
        assert isinstance(newest, StreamId)
