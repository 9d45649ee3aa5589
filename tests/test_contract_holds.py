"""Extending a hold and giving part of it back (issue 15), on every strategy and backend.

The same fixtures as tests/test_contract.py (one engine per backend × strategy); every
concurrent case asserts exact counts from the answers and audits the tables directly
(docs/design.md#extending-a-hold, docs/design.md#partial-release).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import select

from stockguard import domain
from stockguard.domain import Line, Status
from stockguard.domain.events import EventType
from stockguard.engine import Engine
from stockguard.stores.memory import MemoryStore
from stockguard.stores.sql import schema as t
from test_contract import assert_invariants, settle, table_row
from test_events import all_events, assert_crossings_alternate

pytestmark = [pytest.mark.asyncio, pytest.mark.memory]

HOLDS = 24
"""Holds per race: enough for both orders to happen on every backend, few enough that
the 25 engines of a case stay well within the suite's time."""


async def store_now_ms(engine: Engine) -> int:
    async with engine.store.transaction(read_only=True) as tx:
        return await tx.now_ms()


async def sales(engine: Engine, sku: str) -> dict[str, int]:
    """Units sold per reservation id, from the ledger."""
    await settle(engine)
    sold: Counter[str] = Counter()
    if isinstance(engine.store, MemoryStore):
        for _, m in engine.store.state.movements:
            if m.sku == sku and m.reason == "sale" and m.reservation_id:
                sold[m.reservation_id] -= m.delta
        return dict(sold)
    c = t.stock_movements.c
    async with engine.store.transaction(read_only=True) as tx:
        rows = await tx.connection.execute(
            select(c.reservation_id, c.delta).where(c.sku == sku, c.reason == "sale")
        )
        for rid, delta in rows:
            sold[rid] -= int(delta)
    return dict(sold)


# ---------------------------------------------------------------------------- extend


async def test_extend_moves_expiry_later_never_earlier_and_at_most_the_lifetime(
    engine: Engine,
) -> None:
    await engine.set_on_hand("X", 10)
    hold = (await engine.reserve("ext", [("X", 2)], ttl_s=60)).reservation

    longer = await engine.extend(hold.id, 600)
    assert longer.status is Status.HELD and longer.lines == hold.lines
    assert longer.expires_at_ms >= hold.expires_at_ms + 500_000
    shorter = await engine.extend(hold.id, 30)  # never earlier: answered unchanged
    assert shorter.expires_at_ms == longer.expires_at_ms
    capped = await engine.extend(hold.id, domain.TTL_S_MAX)
    lifetime_end = hold.created_at_ms + domain.HOLD_LIFETIME_S_MAX * 1000
    assert longer.expires_at_ms < capped.expires_at_ms <= lifetime_end
    again = await engine.extend(hold.id, domain.TTL_S_MAX)  # replay at the limit: the same
    assert again == capped == await engine.get_reservation(hold.id)
    assert await table_row(engine, "X") == (10, 2)

    await engine.confirm(hold.id)
    with pytest.raises(domain.InvalidState):
        await engine.extend(hold.id, 60)
    dropped = (await engine.reserve("ext-2", [("X", 1)])).reservation
    await engine.release(dropped.id)
    with pytest.raises(domain.InvalidState):
        await engine.extend(dropped.id, 60)
    with pytest.raises(domain.ReservationNotFound):
        await engine.extend("00000000-0000-0000-0000-000000000000", 60)
    for ttl in (0, domain.TTL_S_MAX + 1, True, "60"):
        with pytest.raises(domain.InvalidInput):
            await engine.extend(hold.id, ttl)  # type: ignore[arg-type]
    await settle(engine)
    assert (await engine.store.get_reservation(hold.id)).expires_at_ms == capped.expires_at_ms
    assert await table_row(engine, "X") == (8, 0)
    await assert_invariants(engine)


async def test_extends_racing_the_sweep_leave_each_hold_extended_or_expired(
    engine: Engine,
) -> None:
    """24 holds of 1 s expire around the same moment; extends and sweeps race there.

    Each hold ends up either extended (the answer's expiry, still held after the last
    sweep) or expired (the extend answered ReservationExpired, its unit back), never
    both; an extend after the end is refused; the tables agree and the audit is clean.
    """
    await engine.set_on_hand("RACE", HOLDS)
    holds = [
        outcome.reservation
        for outcome in await asyncio.gather(
            *(engine.reserve(f"ext-race-{n}", [("RACE", 1)], ttl_s=1) for n in range(HOLDS))
        )
    ]
    middle_expiry_ms = holds[len(holds) // 2].expires_at_ms
    await asyncio.sleep(max(middle_expiry_ms - await store_now_ms(engine) - 50, 0) / 1000)

    async def extend(reservation_id: str) -> domain.Reservation | None:
        try:
            return await engine.extend(reservation_id, 120)
        except domain.ReservationExpired:
            return None

    async def sweep() -> None:
        for _ in range(10):
            await engine.expire_due()
            await asyncio.sleep(0.03)

    results = await asyncio.gather(*(extend(h.id) for h in holds), sweep(), sweep())
    answers = results[:HOLDS]
    await engine.expire_due()

    extended = 0
    for hold, answer in zip(holds, answers, strict=True):
        now = await engine.get_reservation(hold.id)
        if answer is None:
            assert now.status is Status.EXPIRED
            with pytest.raises(domain.ReservationExpired):
                await engine.extend(hold.id, 60)
        else:
            extended += 1
            assert answer.status is Status.HELD and answer.expires_at_ms > hold.expires_at_ms
            assert now.status is Status.HELD and now.expires_at_ms == answer.expires_at_ms
    assert await table_row(engine, "RACE") == (HOLDS, extended)
    await assert_invariants(engine)


# ---------------------------------------------------------------------------- partial release


async def test_partial_release_gives_back_units_and_confirm_sells_the_rest(
    engine: Engine,
) -> None:
    await engine.set_on_hand("A", 10)
    await engine.set_on_hand("B", 10)
    hold = (await engine.reserve("part", [("A", 5), ("B", 2)])).reservation

    after = await engine.release(hold.id, [("A", 2)])
    assert after.status is Status.HELD and after.lines == (Line("A", 3), Line("B", 2))
    assert after.expires_at_ms == hold.expires_at_ms
    assert await table_row(engine, "A") == (10, 3)
    after = await engine.release(hold.id, [("B", 2)])  # a line at 0 is removed
    assert after.lines == (Line("A", 3),)
    assert await table_row(engine, "B") == (10, 0)

    for refused in ([("A", 4)], [("B", 1)], [("C", 1)], [("A", 1), ("B", 1)]):
        with pytest.raises(domain.InvalidInput):
            await engine.release(hold.id, refused)
    for hostile in ([], [("A", 0)], [("A", 1), ("A", 1)], [("A\x00", 1)]):
        with pytest.raises(domain.InvalidInput):
            await engine.release(hold.id, hostile)
    assert await engine.get_reservation(hold.id) == after
    assert await table_row(engine, "A") == (10, 3)
    await assert_invariants(engine)

    sold = await engine.confirm(hold.id)
    assert sold.status is Status.CONFIRMED and sold.lines == (Line("A", 3),)
    assert await table_row(engine, "A") == (7, 0)
    assert await sales(engine, "A") == {hold.id: 3}
    with pytest.raises(domain.InvalidState):
        await engine.release(hold.id, [("A", 1)])
    await assert_invariants(engine)


async def test_giving_back_every_unit_left_releases_the_hold(engine: Engine) -> None:
    await engine.set_on_hand("A", 4)
    hold = (await engine.reserve("all", [("A", 4)])).reservation
    await engine.release(hold.id, [("A", 1)])

    released = await engine.release(hold.id, [("A", 3)])
    assert released.status is Status.RELEASED
    assert await engine.release(hold.id, [("A", 3)]) == released  # a released hold: as is
    assert (await engine.release(hold.id)).status is Status.RELEASED
    assert await table_row(engine, "A") == (4, 0)
    with pytest.raises(domain.InvalidState):
        await engine.confirm(hold.id)
    await assert_invariants(engine)


async def test_partial_releases_racing_confirms_sell_exactly_what_remained(
    engine: Engine,
) -> None:
    """24 holds of 5 units; for each, a confirm and a give-back of 2 race.

    Whichever comes first at the reservation's row decides: give-back first, the confirm
    sells 3; confirm first, the give-back is refused (InvalidState) and 5 are sold. The
    ledger's sale of each hold equals what its confirm answered, totals are exact.
    """
    await engine.set_on_hand("P", 5 * HOLDS)
    holds = [
        outcome.reservation
        for outcome in await asyncio.gather(
            *(engine.reserve(f"pr-{n}", [("P", 5)]) for n in range(HOLDS))
        )
    ]

    async def give_back(reservation_id: str) -> bool:
        try:
            left = await engine.release(reservation_id, [("P", 2)])
        except domain.InvalidState:
            return False
        assert left.status is Status.HELD and left.lines == (Line("P", 3),)
        return True

    jobs = []
    for n, hold in enumerate(holds):  # half with the confirm asked first, half after
        pair = [engine.confirm(hold.id), give_back(hold.id)]
        jobs.extend(pair if n % 2 else pair[::-1])
    results = await asyncio.gather(*jobs)

    sold_by_answer: dict[str, int] = {}
    for n, hold in enumerate(holds):
        first, second = results[2 * n], results[2 * n + 1]
        confirmed, gave_back = (first, second) if n % 2 else (second, first)
        assert isinstance(confirmed, domain.Reservation)
        assert confirmed.status is Status.CONFIRMED
        units = sum(line.quantity for line in confirmed.lines)
        assert units == (3 if gave_back else 5)
        sold_by_answer[hold.id] = units
    total = sum(sold_by_answer.values())
    assert await sales(engine, "P") == sold_by_answer
    assert await table_row(engine, "P") == (5 * HOLDS - total, 0)
    assert (await engine.stock_of("P")).available == 5 * HOLDS - total
    await assert_invariants(engine)


async def test_partial_release_events_say_partial_and_an_extend_says_nothing(
    engine: Engine,
) -> None:
    """A partial release writes ``reservation.released`` with ``partial: true`` and the
    lines given back, and its units count for the crossings (sold out -> back in stock);
    an extension writes no event (none exists for it); the confirm names what it sold."""
    await engine.set_on_hand("EV", 3)
    hold = (await engine.reserve("ev", [("EV", 3)])).reservation  # sold out
    before = len(await all_events(engine))
    await engine.extend(hold.id, 600)
    assert len(await all_events(engine)) == before
    await engine.release(hold.id, [("EV", 2)])  # back in stock
    await engine.confirm(hold.id)

    events = [e for e in await all_events(engine) if e.id > before]
    mine = [e.event for e in events if e.event.reservation_id == hold.id]
    assert [e.type for e in mine] == [EventType.RELEASED, EventType.CONFIRMED]
    assert mine[0].data["partial"] is True
    assert mine[0].data["lines"] == [{"sku": "EV", "quantity": 2}]
    assert mine[0].data["order_id"] == "ev"
    assert mine[0].data["levels"]["EV"] == {"on_hand": 3, "reserved": 1, "available": 2}
    assert "partial" not in mine[1].data
    assert mine[1].data["lines"] == [{"sku": "EV", "quantity": 1}]
    assert [e.event.type for e in events if e.event.sku == "EV"] == [EventType.BACK_IN_STOCK]
    assert_crossings_alternate(await all_events(engine), "EV", 2)
