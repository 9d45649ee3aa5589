"""The coalescing strategy: batched holds and transitions, its writer, its limits.

The contract suite already runs it on every backend; these tests pin down what is
specific to batching: FIFO decisions inside one batch, order_ids repeated in a batch,
one bad request not poisoning the rest, a failing transaction, a full queue and close().
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from stockguard import domain
from stockguard.domain import Status
from stockguard.engine import Engine
from stockguard.stores.sql.audit import audit, stock_totals
from stockguard.stores.sql.store import SqlStore
from stockguard.strategies.coalescing import (
    CoalescingStrategy,
    apply_batch,
    apply_mixed,
    decide_batch,
)


def request(order_id: str, *lines: tuple[str, int]) -> domain.ReserveRequest:
    return domain.validate_reserve(order_id, list(lines), 60)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlStore]:
    opened = SqlStore.open(db_url, pool_size=2)
    try:
        yield opened
    finally:
        await opened.close()


async def totals(store: SqlStore, sku: str) -> tuple[int, int]:
    async with store.transaction(read_only=True) as tx:
        found = (await stock_totals(tx.connection, [sku]))[sku]
    return found.on_hand, found.reserved


def kinds(results: list[domain.ReserveOutcome | domain.StockguardError]) -> list[str]:
    return [
        ("held" if r.created else "replayed") if isinstance(r, domain.ReserveOutcome) else r.kind
        for r in results
    ]


async def test_a_batch_grants_in_arrival_order_and_the_next_buyer_gets_what_is_left(
    store: SqlStore,
) -> None:
    await store.set_on_hand("B", 5)
    results = await apply_batch(
        store,
        [
            request("o1", ("B", 3)),
            request("o2", ("B", 4)),
            request("o3", ("B", 2)),
            request("o4", ("B", 1)),
        ],
    )

    assert kinds(results) == ["held", "out-of-stock", "held", "out-of-stock"]
    refused = results[1]
    assert isinstance(refused, domain.OutOfStock)
    assert refused.shortfalls == (domain.Shortfall("B", 4, 2),)
    assert await totals(store, "B") == (5, 5)
    assert (await audit(store)).ok


async def test_an_unknown_sku_is_refused_without_poisoning_the_batch(store: SqlStore) -> None:
    await store.set_on_hand("K", 2)
    results = await apply_batch(
        store, [request("a", ("K", 1)), request("b", ("K", 1), ("NOPE", 1)), request("c", ("K", 1))]
    )

    assert kinds(results) == ["held", "unknown-sku", "held"]
    assert await totals(store, "K") == (2, 2)


async def test_an_order_id_repeated_in_one_batch_creates_one_hold(store: SqlStore) -> None:
    await store.set_on_hand("R", 10)
    results = await apply_batch(
        store,
        [request("same", ("R", 2)), request("same", ("R", 2)), request("same", ("R", 3))],
    )

    assert kinds(results) == ["held", "replayed", "idempotency-conflict"]
    first, again = results[0], results[1]
    assert isinstance(first, domain.ReserveOutcome) and isinstance(again, domain.ReserveOutcome)
    assert again.reservation.id == first.reservation.id
    assert await totals(store, "R") == (10, 2)


async def test_an_order_stored_earlier_is_replayed_inside_a_batch(store: SqlStore) -> None:
    await store.set_on_hand("R", 1)
    [first] = await apply_batch(store, [request("early", ("R", 1))])
    results = await apply_batch(store, [request("late", ("R", 1)), request("early", ("R", 1))])

    assert kinds(results) == ["out-of-stock", "replayed"]
    replay = results[1]
    assert isinstance(first, domain.ReserveOutcome) and isinstance(replay, domain.ReserveOutcome)
    assert replay.reservation.id == first.reservation.id


def decide_pure(
    levels: dict[str, domain.StockLevel], batch: list[domain.ReserveRequest]
) -> tuple[dict[str, domain.StockLevel], list[domain.ReserveOutcome | domain.StockguardError]]:
    """``decide_batch`` with nothing stored earlier; holds get ids hold-0, hold-1…"""
    ids = (f"hold-{n}" for n in itertools.count())
    return decide_batch(levels, {}, batch, lambda: next(ids), 0)


def test_a_repeat_that_differs_from_a_refused_first_is_decided_on_its_own() -> None:
    """Pure: the first 'x' asks for too much and is refused; the second 'x' asks for
    less, so it is decided as a new request, in a later round, and granted."""
    levels = {"S": domain.StockLevel("S", 3, 0, 0)}
    batch = [request("x", ("S", 5)), request("y", ("S", 1)), request("x", ("S", 2))]
    after, results = decide_pure(levels, batch)

    assert kinds(results) == ["out-of-stock", "held", "held"]
    assert after["S"].reserved == 3


async def test_an_unreachable_store_fails_every_request_of_the_batch_with_its_error() -> None:
    unreachable = SqlStore.open("postgresql://postgres@127.0.0.1:1/nowhere", pool_size=1)
    try:
        results = await apply_batch(unreachable, [request("a", ("X", 1)), request("b", ("X", 1))])
    finally:
        await unreachable.close()

    assert kinds(results) == ["store-unavailable", "store-unavailable"]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_failed_batch_fails_its_waiters_and_the_writer_goes_on(db_url: str) -> None:
    """The reservations table is renamed away from another connection, so the next batch
    fails inside the database; every waiter gets an error, then the table comes back and
    the same writer serves the next requests."""
    async with await Engine.open(db_url, "coalescing", migrate=False) as engine:
        await engine.set_on_hand("W", 10)
        await engine.reserve("before", [("W", 1)])
        async with engine.store.transaction() as tx:
            await tx.connection.execute(text("ALTER TABLE reservations RENAME TO gone"))
            await tx.commit()
        try:
            failed = await asyncio.gather(
                *(engine.reserve(f"during-{n}", [("W", 1)]) for n in range(5)),
                return_exceptions=True,
            )
        finally:
            async with engine.store.transaction() as tx:
                await tx.connection.execute(text("ALTER TABLE gone RENAME TO reservations"))
                await tx.commit()
        after = await engine.reserve("after", [("W", 1)])

        assert all(isinstance(outcome, Exception) for outcome in failed)
        assert after.created
        assert (await engine.stock_of("W")).reserved == 2
        assert (await audit(engine.store)).ok


async def test_a_full_queue_answers_overloaded(db_url: str) -> None:
    """50 requests arrive before the writer first runs; the queue holds 5 of them."""
    async with await Engine.open(
        db_url, "coalescing", migrate=False, queue_depth_max=5, group_count=1
    ) as engine:
        await engine.set_on_hand("Q", 100)

        async def buy(n: int) -> str:
            try:
                await engine.reserve(f"q-{n}", [("Q", 1)])
            except domain.Overloaded as busy:
                assert busy.retry_after_s >= 1
                return "overloaded"
            return "held"

        outcomes = Counter(await asyncio.gather(*(buy(n) for n in range(50))))

        assert outcomes["overloaded"] > 0
        assert outcomes["held"] + outcomes["overloaded"] == 50
        assert (await engine.stock_of("Q")).reserved == outcomes["held"]


async def test_close_answers_every_request_already_accepted(db_url: str) -> None:
    engine = await Engine.open(db_url, "coalescing", migrate=False)
    try:
        await engine.set_on_hand("C", 150)
        await engine.set_on_hand("D", 1)
        pending = [asyncio.ensure_future(engine.reserve(f"c-{n}", [("C", 1)])) for n in range(300)]
        await asyncio.sleep(0)  # every request is queued now
        await engine.strategy.close()
        answers = await asyncio.gather(*pending, return_exceptions=True)
        with pytest.raises(domain.StoreUnavailable):
            await engine.reserve("too-late", [("D", 1)])

        held = sum(1 for a in answers if isinstance(a, domain.ReserveOutcome))
        refused = sum(1 for a in answers if isinstance(a, domain.OutOfStock))
        assert (held, refused) == (150, 150)
        assert (await engine.stock_of("C")).reserved == 150
    finally:
        await engine.close()


async def test_batched_confirms_and_releases_keep_every_total_and_the_ledger_exact(
    db_url: str,
) -> None:
    """60 holds; 30 confirms, 30 releases and a replay of each race in a few batches."""
    async with await Engine.open(db_url, "coalescing", migrate=False) as engine:
        await engine.set_on_hand("T", 100)
        holds = [(await engine.reserve(f"t-{n}", [("T", 1)])).reservation for n in range(60)]
        calls = [engine.confirm(h.id) for h in holds[:30]] + [
            engine.release(h.id) for h in holds[30:]
        ]
        calls += [engine.confirm(holds[0].id), engine.release(holds[59].id)]
        ended = await asyncio.gather(*calls)
        with pytest.raises(domain.InvalidState):
            await engine.release(holds[1].id)

        assert Counter(r.status for r in ended) == {Status.CONFIRMED: 31, Status.RELEASED: 31}
        assert (await engine.stock_of("T")).on_hand == 70
        assert (await engine.stock_of("T")).reserved == 0
        ledger, _ = await engine.movements("T", limit=100)
        sales = [m.on_hand_after for m in ledger if m.reason == "sale"]
        assert sorted(sales) == list(range(70, 100))
        assert isinstance(engine.strategy, CoalescingStrategy)
        # All 62 were queued before the writer ran: one transaction, not 62.
        assert engine.strategy.counters["coalescing_transition_batches"] <= 2
        assert (await audit(engine.store)).ok


async def test_one_batch_of_holds_confirms_and_releases_answers_each_in_its_place(
    store: SqlStore,
) -> None:
    """Holds and endings queued together are one transaction: the endings first (a
    release gives its units to a hold of the same batch), answers in queue order."""
    await store.set_on_hand("M1", 3)
    await store.set_on_hand("M2", 5)
    [paid, dropped] = await apply_batch(
        store, [request("paid", ("M1", 1), ("M2", 2)), request("dropped", ("M1", 2))]
    )
    assert isinstance(paid, domain.ReserveOutcome) and isinstance(dropped, domain.ReserveOutcome)
    counters: Counter[str] = Counter()
    results = await apply_mixed(
        store,
        counters,
        [
            request("new", ("M1", 2), ("M2", 1)),  # only fits once "dropped" is released
            (paid.reservation.id, Status.CONFIRMED),
            (dropped.reservation.id, Status.RELEASED),
            request("too-many", ("M1", 1)),
            (paid.reservation.id, Status.CONFIRMED),  # a replay in the same batch
            ("no-such-hold", Status.RELEASED),
        ],
    )

    assert isinstance(results[0], domain.ReserveOutcome) and results[0].created
    assert isinstance(results[1], domain.Reservation)
    assert results[1].status is Status.CONFIRMED
    assert isinstance(results[2], domain.Reservation) and results[2].status is Status.RELEASED
    assert isinstance(results[3], domain.OutOfStock)
    assert isinstance(results[4], domain.Reservation)
    assert results[4].status is Status.CONFIRMED
    assert isinstance(results[5], domain.ReservationNotFound)
    assert await totals(store, "M1") == (2, 2)
    assert await totals(store, "M2") == (3, 1)
    assert counters["coalescing_transition_requests"] == 4
    ledger, _ = await store.movements("M2")
    newest = ledger[0]
    assert (newest.reason, newest.delta, newest.on_hand_after) == ("sale", -2, 3)
    assert (await audit(store)).ok


def test_a_repeat_of_a_refused_order_with_the_same_lines_gets_the_same_refusal() -> None:
    """Pure: 'x' is refused at its turn; its repeat in the same batch asks for the same
    lines, so it hears the same out-of-stock answer (its own copy of it)."""
    levels = {"S": domain.StockLevel("S", 1, 0, 0)}
    batch = [request("x", ("S", 2)), request("x", ("S", 2)), request("y", ("S", 1))]
    after, results = decide_pure(levels, batch)

    assert kinds(results) == ["out-of-stock", "out-of-stock", "held"]
    first, repeat = results[0], results[1]
    assert isinstance(first, domain.OutOfStock) and isinstance(repeat, domain.OutOfStock)
    assert repeat is not first and repeat.shortfalls == first.shortfalls
    assert after["S"].reserved == 1


async def test_a_strategy_that_fails_to_start_leaves_no_writer_running(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start() gets halfway (its writers run) and then fails: Engine.open stops them."""
    started = CoalescingStrategy.start

    async def start_then_fail(self: CoalescingStrategy) -> None:
        await started(self)
        raise RuntimeError("failed after the writers started")

    monkeypatch.setattr(CoalescingStrategy, "start", start_then_fail)
    with pytest.raises(RuntimeError):
        await Engine.open(db_url, "coalescing", migrate=False)
    await asyncio.sleep(0)

    writers = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("stockguard-coalescing") and not task.done()
    ]
    assert writers == []
