"""The events outbox keeps its promise on every backend × strategy (docs/events.md).

No phantom events (a refused, conflicting or replayed request writes none), no missing
ones (each committed transition has exactly one), and the sold-out / back-in-stock events
of a SKU alternate and end agreeing with its final level, across a flash sale with
releases, expiries and admin edits.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stockguard import domain
from stockguard.domain.events import EventType, StoredEvent
from stockguard.engine import Engine

pytestmark = [pytest.mark.asyncio, pytest.mark.memory]


async def all_events(engine: Engine) -> list[StoredEvent]:
    """Every event so far, numbered (the relay's sequencing step, run here by hand)."""
    await engine.strategy.settle()
    while await engine.sequence_events():
        pass
    found: list[StoredEvent] = []
    while True:
        page = await engine.events_after(found[-1].id if found else 0, 500)
        if not page:
            return found
        found.extend(page)


def of_type(
    events: list[StoredEvent], kind: EventType, sku: str | None = None
) -> list[StoredEvent]:
    return [e for e in events if e.event.type is kind and (sku is None or e.event.sku == sku)]


def assert_crossings_alternate(events: list[StoredEvent], sku: str, available: int) -> None:
    """sold_out / back_in_stock of ``sku`` alternate, starting with sold_out (it began in
    stock), and the last one agrees with the final level."""
    crossings = [
        e.event.type
        for e in events
        if e.event.sku == sku and e.event.type in (EventType.SOLD_OUT, EventType.BACK_IN_STOCK)
    ]
    for index, kind in enumerate(crossings):
        expected = EventType.SOLD_OUT if index % 2 == 0 else EventType.BACK_IN_STOCK
        assert kind is expected, crossings
    if available == 0:
        assert crossings and crossings[-1] is EventType.SOLD_OUT
    else:
        assert not crossings or crossings[-1] is EventType.BACK_IN_STOCK


async def test_a_flash_sale_emits_one_event_per_hold_and_exactly_one_sold_out(
    engine: Engine,
) -> None:
    await engine.set_on_hand("F", 20)
    results = await asyncio.gather(
        *(engine.reserve(f"o-{n}", [("F", 1)]) for n in range(60)), return_exceptions=True
    )
    held = [r.reservation for r in results if not isinstance(r, BaseException)]
    assert len(held) == 20
    assert all(isinstance(r, domain.OutOfStock) for r in results if isinstance(r, BaseException))

    events = await all_events(engine)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    held_events = of_type(events, EventType.HELD)
    assert sorted(e.event.reservation_id or "" for e in held_events) == sorted(r.id for r in held)
    sold_out = of_type(events, EventType.SOLD_OUT, "F")
    assert len(sold_out) == 1
    assert sold_out[0].event.data["levels"]["F"] == {"on_hand": 20, "reserved": 20, "available": 0}
    assert events.index(sold_out[0]) > max(events.index(e) for e in held_events[:-1])
    created = of_type(events, EventType.STOCK_CHANGED, "F")
    assert [e.event.data["reason"] for e in created] == ["created"]


async def test_releases_expiries_and_holds_alternate_sold_out_and_back_in_stock(
    engine: Engine,
) -> None:
    await engine.set_on_hand("A", 4)
    first = [(await engine.reserve(f"a-{n}", [("A", 1)])).reservation for n in range(4)]
    await engine.release(first[0].id)  # back in stock
    await engine.confirm(first[1].id)  # still 1 available: nothing crosses
    short = (await engine.reserve("short", [("A", 1)], ttl_s=1)).reservation  # sold out
    await asyncio.sleep(1.2)
    assert await engine.expire_due() == 1  # back in stock
    again = await asyncio.gather(
        *(engine.reserve(f"b-{n}", [("A", 1)]) for n in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in again) == 1  # sold out

    events = await all_events(engine)
    assert [e.event.type for e in events if e.event.reservation_id == short.id] == [
        EventType.HELD,
        EventType.EXPIRED,
    ]
    assert [e.event.reservation_id for e in of_type(events, EventType.RELEASED)] == [first[0].id]
    confirmed = of_type(events, EventType.CONFIRMED)
    assert [e.event.reservation_id for e in confirmed] == [first[1].id]
    assert confirmed[0].event.data["levels"]["A"]["on_hand"] == 3
    assert confirmed[0].event.data["order_id"] == "a-1"
    level = await engine.stock_of("A")
    assert level.available == 0
    assert_crossings_alternate(events, "A", level.available)
    assert len(of_type(events, EventType.SOLD_OUT, "A")) == 3
    assert len(of_type(events, EventType.BACK_IN_STOCK, "A")) == 2


async def test_refused_conflicting_and_replayed_requests_emit_nothing(engine: Engine) -> None:
    await engine.set_on_hand("P", 2)
    await engine.set_on_hand("Q", 0)
    hold = (await engine.reserve("first", [("P", 1)])).reservation
    before = await all_events(engine)

    with pytest.raises(domain.OutOfStock):
        await engine.reserve("both", [("P", 1), ("Q", 1)])  # rolls back the P line too
    with pytest.raises(domain.IdempotencyConflict):
        await engine.reserve("first", [("P", 2)])
    assert (await engine.reserve("first", [("P", 1)])).reservation.id == hold.id  # replay
    with pytest.raises(domain.StockChanged):
        await engine.set_on_hand("P", 9, expected_on_hand=5)
    await engine.confirm(hold.id)
    await engine.confirm(hold.id)  # replay-safe: no second event

    after = await all_events(engine)
    new = [e.event.type for e in after[len(before) :]]
    assert new == [EventType.CONFIRMED]


async def test_admin_changes_say_before_after_and_why(engine: Engine) -> None:
    await engine.set_on_hand("S", 5)
    await engine.reserve("s", [("S", 5)])
    await engine.adjust("S", 3, "delivery")  # 0 -> 3 available: back in stock
    await engine.set_on_hand("S", 5)  # 3 -> 0: sold out

    events = await all_events(engine)
    changes = of_type(events, EventType.STOCK_CHANGED, "S")
    assert [
        (c.event.data["on_hand_before"], c.event.data["on_hand_after"], c.event.data["reason"])
        for c in changes
    ] == [(0, 5, "created"), (5, 8, "delivery"), (8, 5, "set")]
    assert changes[1].event.data["levels"]["S"] == {"on_hand": 8, "reserved": 5, "available": 3}
    assert [e.event.type for e in events if e.event.sku == "S"][-4:] == [
        EventType.STOCK_CHANGED,
        EventType.BACK_IN_STOCK,
        EventType.STOCK_CHANGED,
        EventType.SOLD_OUT,
    ]


async def test_low_stock_fires_once_per_fall_below_the_threshold(engine: Engine) -> None:
    await engine.set_on_hand("L", 10)
    await engine.set_low_stock_threshold("L", 3)
    assert await engine.low_stock_threshold("L") == 3
    holds = [(await engine.reserve(f"l-{n}", [("L", 2)])).reservation for n in range(4)]
    # available 10 -> 8 -> 6 -> 4 -> 2: one stock.low, at the step from 4 to 2
    await engine.reserve("l-last", [("L", 1)])  # 2 -> 1: still inside the band
    await engine.release(holds[0].id)  # 1 -> 3: a rise, never low
    await engine.release(holds[1].id)  # 3 -> 5: out of the band
    await engine.reserve("l-again", [("L", 3)])  # 5 -> 2: low again

    events = await all_events(engine)
    low = of_type(events, EventType.LOW, "L")
    assert [
        (e.event.data["available_before"], e.event.data["levels"]["L"]["available"]) for e in low
    ] == [
        (4, 2),
        (5, 2),
    ]
    assert low[0].event.data["threshold"] == 3
    with pytest.raises(domain.UnknownSku):
        await engine.set_low_stock_threshold("nope", 1)


async def test_every_committed_hold_of_a_concurrent_multi_sku_sale_has_its_event(
    engine: Engine,
) -> None:
    skus = ["M1", "M2", "M3"]
    for sku in skus:
        await engine.set_on_hand(sku, 30)
    requests = [
        [(skus[n % 3], 1), (skus[(n + 1) % 3], 2)] for n in range(80)
    ]  # 80 orders of 3 units each against 90 units
    results = await asyncio.gather(
        *(engine.reserve(f"m-{n}", lines) for n, lines in enumerate(requests)),
        return_exceptions=True,
    )
    held = [r.reservation for r in results if not isinstance(r, BaseException)]
    for r in held[::2]:
        await engine.release(r.id)

    events = await all_events(engine)
    assert Counter(e.event.reservation_id for e in of_type(events, EventType.HELD)) == Counter(
        r.id for r in held
    )
    assert len(of_type(events, EventType.RELEASED)) == len(held[::2])
    for sku in skus:
        assert_crossings_alternate(events, sku, (await engine.stock_of(sku)).available)
