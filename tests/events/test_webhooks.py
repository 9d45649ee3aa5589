"""Webhooks through a real relay to a real local HTTP server (docs/events.md#webhooks).

Every POST is verified with the stand-alone verifier of docs/events.md; events arrive in
id order, once per endpoint when nothing fails, and an endpoint that was down gets its
whole backlog in order when it returns. Waiting is bounded polling, never a time limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from stockguard.config import EventsSettings
from stockguard.domain.events import StoredEvent
from stockguard.engine import Engine
from stockguard.events import state
from stockguard.events.relay import Relay
from stockguard.stores.sql.store import SqlStore

from .receiver import Receiver, running_receiver

pytestmark = [pytest.mark.asyncio]
POLLS_MAX = 2_400
POLL_S = 0.05
FAST = EventsSettings(
    poll_interval_s=0.02,
    lease_s=2.0,
    webhook_backoff_s=0.02,
    webhook_backoff_max_s=0.2,
    webhook_attempts_max=100,
)


async def eventually(check: Callable[[], Any], what: str) -> None:
    for _ in range(POLLS_MAX):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"never happened: {what}")


async def committed(engine: Engine) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    while True:
        page = await engine.events_after(found[-1].id if found else 0, 500)
        if not page:
            return found
        found.extend(page)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    opened = await Engine.open(db_url, "conditional", migrate=False)
    try:
        yield opened
    finally:
        await opened.close()


async def add_endpoint(engine: Engine, receiver: Receiver, **extra: Any) -> state.Endpoint:
    assert isinstance(engine.store, SqlStore)
    endpoint = await state.create_endpoint(
        engine.store,
        receiver.url,
        extra.pop("secret", None),
        extra.pop("types", "all"),
        True,
        "test",
    )
    receiver.secret = endpoint.secret
    return endpoint


async def sale(engine: Engine, skus: list[str], holds: int) -> None:
    for sku in skus:
        await engine.set_on_hand(sku, holds // 2)
    for n in range(holds):
        try:
            held = await engine.reserve(f"o-{n}", [(skus[n % len(skus)], 1)])
        except Exception:
            continue
        if n % 3 == 0:
            await engine.release(held.reservation.id)


async def test_every_event_reaches_the_endpoint_signed_once_and_in_order(engine: Engine) -> None:
    with running_receiver() as receiver:
        await add_endpoint(engine, receiver)
        relay = Relay(engine.store, FAST)
        relay.start()
        try:
            await sale(engine, ["A", "B"], 30)
            await engine.sequence_events()  # the relay numbers too; harmless here
            await eventually(
                lambda: receiver.unique_ids() and len(receiver.unique_ids()) >= 1, "first"
            )
            expected: list[int] = []

            async def all_there() -> bool:
                nonlocal expected
                expected = [e.id for e in await committed(engine)]
                return receiver.unique_ids() == expected

            await eventually(all_there, "every committed event delivered")
        finally:
            await relay.stop()
        assert receiver.bad_signatures == 0
        ids = [item.id for item in receiver.received]
        assert ids == sorted(ids), "out of order"
        assert len(ids) == len(set(ids)), "a duplicate without any failure"
        envelopes = receiver.envelopes()
        for event in await committed(engine):
            assert envelopes[event.id] == event.envelope()


async def test_an_endpoint_down_for_a_while_gets_its_whole_backlog_in_order(
    engine: Engine,
) -> None:
    with running_receiver() as receiver:
        await add_endpoint(engine, receiver)
        receiver.status = 503
        relay = Relay(engine.store, FAST)
        relay.start()
        try:
            await sale(engine, ["A", "B", "C"], 45)
            await eventually(lambda: receiver.refused >= 10, "the endpoint refused a while")
            assert receiver.unique_ids() == []
            receiver.status = 200
            expected: list[int] = []

            async def backlog_there() -> bool:  # the last events may still await their ids
                nonlocal expected
                expected = [e.id for e in await committed(engine)]
                return receiver.unique_ids() == expected

            await eventually(backlog_there, "the backlog arrived")
        finally:
            await relay.stop()
        ids = [item.id for item in receiver.received]
        assert ids == expected, "the backlog came out of order or twice"
        assert receiver.bad_signatures == 0
        assert isinstance(engine.store, SqlStore)
        found = await state.dead_letters(engine.store, None, 10)
        assert found == []


async def test_an_endpoint_gets_only_its_types(engine: Engine) -> None:
    with running_receiver() as receiver:
        await add_endpoint(engine, receiver, types="stock.sold_out,stock.back_in_stock")
        relay = Relay(engine.store, FAST)
        relay.start()
        try:
            await engine.set_on_hand("S", 1)
            held = await engine.reserve("o-1", [("S", 1)])
            await engine.release(held.reservation.id)
            await eventually(lambda: len(receiver.unique_ids()) == 2, "two crossings")
        finally:
            await relay.stop()
        kinds = [item.envelope["type"] for item in receiver.received]
        assert kinds == ["stock.sold_out", "stock.back_in_stock"]


async def test_two_relays_one_database_one_is_active(engine: Engine) -> None:
    with running_receiver() as receiver:
        await add_endpoint(engine, receiver)
        first, second = Relay(engine.store, FAST), Relay(engine.store, FAST)
        first.start()
        second.start()
        try:
            await eventually(lambda: first.active or second.active, "one relay active")
            await sale(engine, ["A"], 10)
            expected: list[int] = []

            async def all_there() -> bool:
                nonlocal expected
                expected = [e.id for e in await committed(engine)]
                return bool(expected) and receiver.unique_ids() == expected

            await eventually(all_there, "delivered")
            assert first.active != second.active
            active, standby = (first, second) if first.active else (second, first)
            await active.stop()
            await eventually(lambda: standby.active, "the standby took over")
            await engine.adjust("A", 5, "restock")
            await eventually(
                lambda: len(receiver.unique_ids()) > len(expected), "delivered after takeover"
            )
        finally:
            await first.stop()
            await second.stop()
        ids = receiver.unique_ids()
        assert ids == sorted(ids)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_idle_relay_only_reads(engine: Engine) -> None:
    """An idle relay looks for unnumbered rows with a read each poll; its writes are the
    lease renewals (every lease_s / 4), not a fenced write transaction per poll (on SQLite
    a write locks the whole database)."""
    from sqlalchemy import event

    assert isinstance(engine.store, SqlStore)
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()).upper())

    sync_engine = engine.store.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", note)
    relay = Relay(engine.store, FAST)  # polls every 0.02 s, renews every 0.5 s
    relay.start()
    try:

        def probes() -> int:
            return sum(s.startswith("SELECT STOCK_EVENTS.ROW_ID") for s in statements)

        await eventually(lambda: probes() >= 50, "50 polls")
    finally:
        await relay.stop()
        event.remove(sync_engine, "before_cursor_execute", note)
    lease_writes = sum(s.startswith("UPDATE EVENT_LEASES") for s in statements)
    numbering = sum(s.startswith("UPDATE STOCK_EVENTS") for s in statements)
    assert numbering == 0
    assert lease_writes <= probes() // 5, (lease_writes, probes())
