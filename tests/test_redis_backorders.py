"""Backorders under the redis strategy beyond the shared contract (docs/design.md#backorders).

tests/test_contract_backorders.py checks the answers and audits the SQL tables; here the
write-behind path itself: the persister carries each line's backordered units into
``reservation_lines`` (a hold and its partial release in one batch, and a partial
release of a hold persisted earlier) and a confirm's negative on_hand into the ledger;
reconcile notices a stock hash that lost its ``backorder`` field and puts it back, and a
reload from SQL brings back the allowance and the held lines' backordered units. The
tables are read directly after the persister ran, never through the strategy's answers.
"""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy import select

from redis_support import redis_engine
from stockguard import domain
from stockguard.domain import Line, Status
from stockguard.engine import Engine
from stockguard.stores.redis.client import delete_keyspace
from stockguard.stores.redis.codec import decode_after
from stockguard.stores.redis.events import PoisonEvent, Reserved, parse
from stockguard.stores.redis.persister import Persister
from stockguard.stores.redis.reconcile import reconcile
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.audit import audit
from stockguard.strategies.redis import RedisStrategy


@pytest.fixture(params=["postgres", "mysql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def redis_of(engine: Engine) -> RedisStrategy:
    return cast(RedisStrategy, engine.strategy)


async def sql_lines(engine: Engine, reservation_id: str) -> dict[str, tuple[int, int]]:
    """sku → (quantity, backordered) of one reservation, from the table."""
    c = t.reservation_lines.c
    async with engine.store.transaction(read_only=True) as tx:
        rows = await tx.connection.execute(
            select(c.sku, c.quantity, c.backordered).where(c.reservation_id == reservation_id)
        )
        return {row.sku: (int(row.quantity), int(row.backordered)) for row in rows}


async def sql_level(engine: Engine, sku: str) -> tuple[int, int]:
    c = t.stock_levels.c
    async with engine.store.transaction(read_only=True) as tx:
        row = (await tx.connection.execute(select(c.on_hand, c.reserved).where(c.sku == sku))).one()
        return int(row.on_hand), int(row.reserved)


def backordered(reservation: domain.Reservation) -> dict[str, int]:
    return {line.sku: line.backordered for line in reservation.lines}


@pytest.mark.asyncio
async def test_the_persister_writes_backordered_units_and_negative_on_hand_into_sql(
    db_url: str, redis_url: str
) -> None:
    """No persister of the engine's own: each step below is one batch, so what lands
    together is known. 2 on the shelf, 6 allowed beyond."""
    async with redis_engine(db_url, redis_url, persister=False) as engine:
        strategy = redis_of(engine)
        persister = Persister(strategy.clients, engine.store, strategy.keys)
        await engine.set_on_hand("BO", 2)
        await engine.set_on_hand("PLAIN", 10)
        assert await persister.step() == 2
        await engine.set_policy("BO", domain.Policy(backorder_max=6))  # no event: SQL + Redis

        # Batch 1: a hold is made and partly given back in the same batch (the persister
        # inserts it as it stands), a second one is made and confirmed (inserted ended).
        first = (await engine.reserve("o-1", [("BO", 5), ("PLAIN", 1)])).reservation
        assert backordered(first) == {"BO": 3, "PLAIN": 0}
        await engine.release(first.id, [("BO", 1)])
        second = (await engine.reserve("o-2", [("BO", 3)])).reservation
        assert backordered(second) == {"BO": 3}  # 4 held already, 2 on the shelf
        assert (await engine.confirm(second.id)).status is Status.CONFIRMED
        assert await persister.step() == 4

        assert await sql_lines(engine, first.id) == {"BO": (4, 2), "PLAIN": (1, 0)}
        assert await sql_lines(engine, second.id) == {"BO": (3, 3)}
        assert await sql_level(engine, "BO") == (-1, 4)
        page, _ = await engine.movements("BO", limit=domain.PAGE_LIMIT_MAX)
        assert [(m.delta, m.on_hand_after) for m in page if m.reason == "sale"] == [(-3, -1)]
        assert persister.dead_letters == 0
        assert (await audit(engine.store)).violations == []

        # Batch 2: a partial release of a hold an earlier batch wrote (updated in place).
        after = await engine.release(first.id, [("BO", 1)])
        assert backordered(after) == {"BO": 1, "PLAIN": 0}
        assert await persister.step() == 1
        assert await sql_lines(engine, first.id) == {"BO": (3, 1), "PLAIN": (1, 0)}
        assert backordered(await engine.store.get_reservation(first.id)) == backordered(after)
        assert await sql_level(engine, "BO") == (-1, 3)

        # A restock covers the confirmed backorder first, in both stores.
        await engine.adjust("BO", 4, "received")
        assert await persister.step() == 1
        assert await sql_level(engine, "BO") == (3, 3)
        assert (await engine.stock_of("BO")).available == 6  # 3 + 6 - 3
        assert persister.dead_letters == 0
        assert (await audit(engine.store)).violations == []


@pytest.mark.asyncio
async def test_reconcile_restores_a_lost_allowance_and_a_reload_keeps_backordered_holds(
    db_url: str, redis_url: str
) -> None:
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        commands = strategy.clients.commands
        await engine.set_on_hand("K", 3)
        await engine.set_policy("K", domain.Policy(backorder_max=4))
        held = (await engine.reserve("o-1", [("K", 5)])).reservation
        assert backordered(held) == {"K": 2}
        await strategy.settle()
        assert (await reconcile(strategy.clients, engine.store, strategy.keys)).consistent

        # The stock hash loses its allowance: Redis would refuse what SQL allows.
        await commands.hdel(strategy.keys.stock("K"), "backorder")
        with pytest.raises(domain.OutOfStock):
            await engine.reserve("o-2", [("K", 1)])
        found = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert [d.subject for d in found.differences] == ["policy K"]
        assert "backorder_max 0" in found.differences[0].redis
        assert "backorder_max 4" in found.differences[0].expected
        repaired = await reconcile(strategy.clients, engine.store, strategy.keys, repair=True)
        assert repaired.repaired == 1 and repaired.consistent, repaired.differences
        assert await commands.hget(strategy.keys.stock("K"), "backorder") == "4"
        assert (await engine.stock_of("K")).available == 2  # 3 + 4 - 5

        # A reload from SQL: the allowance and the hold's backordered units come back.
        await strategy.settle()
        await delete_keyspace(commands, strategy.keys)
        report = await reconcile(strategy.clients, engine.store, strategy.keys)
        assert report.loaded is not None and report.loaded.held == 1
        assert await commands.hget(strategy.keys.reservation(held.id), "backordered") == "K\t2"
        assert backordered(await engine.get_reservation(held.id)) == {"K": 2}
        assert (await engine.stock_of("K")).available == 2
        after = await engine.release(held.id, [("K", 1)])
        assert backordered(after) == {"K": 1}
        second = (await engine.reserve("o-2", [("K", 3)])).reservation
        assert backordered(second) == {"K": 3}  # 4 held, 3 on the shelf
        await strategy.settle()
        assert (await reconcile(strategy.clients, engine.store, strategy.keys)).consistent
        assert (await audit(engine.store)).violations == []


@pytest.mark.asyncio
async def test_without_an_allowance_a_hold_writes_no_backordered_field(
    db_url: str, redis_url: str
) -> None:
    """The flash path stays as it was: no allowance, no extra field in the hold's hash
    or its event (docs/design.md#backorders), and a SKU whose allowance is cut to 0
    loses the stock hash field."""
    async with redis_engine(db_url, redis_url) as engine:
        strategy = redis_of(engine)
        commands = strategy.clients.commands
        await engine.set_on_hand("F", 5)
        held = (await engine.reserve("o-1", [("F", 5)])).reservation
        assert backordered(held) == {"F": 0}
        assert await commands.hget(strategy.keys.reservation(held.id), "backordered") is None
        entries = await commands.xrange(strategy.keys.events, "-", "+")
        assert all("backordered" not in fields for _, fields in entries)

        await engine.set_policy("F", domain.Policy(backorder_max=2))
        assert await commands.hget(strategy.keys.stock("F"), "backorder") == "2"
        await engine.release(held.id)
        await engine.set_policy("F", domain.Policy())
        assert await commands.hget(strategy.keys.stock("F"), "backorder") is None
        await strategy.settle()
        assert (await audit(engine.store)).violations == []


def test_a_confirm_event_may_leave_on_hand_below_zero() -> None:
    assert decode_after("A\t-3\nB\t7") == {"A": -3, "B": 7}
    with pytest.raises(ValueError, match="malformed on_hand after"):
        decode_after("A\t--3")


def test_a_reserved_event_carries_its_backordered_units() -> None:
    fields = {
        "type": "reserved",
        "id": "r-1",
        "order_id": "o-1",
        "customer_id": "",
        "lines": "A\t5\nB\t1",
        "expires_at": "2000",
        "at": "1000",
        "backordered": "A\t2",
    }
    event = parse("1-0", fields)
    assert isinstance(event, Reserved)
    assert [(line.sku, line.quantity, line.backordered) for line in event.reservation.lines] == [
        ("A", 5, 2),
        ("B", 1, 0),
    ]
    assert event.reservation.lines == (Line("A", 5), Line("B", 1))  # a replay compares these
    with pytest.raises(PoisonEvent):
        parse("1-1", {**fields, "backordered": "C\t1"})  # a SKU the hold does not hold
