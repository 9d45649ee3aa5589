"""Group commit for holds: many buyers, one transaction (docs/design.md#coalescing).

One transaction per reservation serialises every buyer of a hot SKU on its row lock, so
the N-th buyer waits N transactions (docs/design.md#seed-002). Here each process queues
reservations in a bounded FIFO per SKU group, and one writer task per group drains it
(``batch_writer.BatchWriter``):
a batch of up to ``batch_size_max`` requests becomes ONE transaction that

1. locks the stock rows of every SKU in the batch once, in sorted order;
2. looks up every order_id of the batch in one query (idempotent replays), and folds
   repeated order_ids inside the batch onto their first occurrence;
3. decides the requests strictly in arrival order with the pure ``domain.decide_in_order``
   (all or nothing each; a request that cannot be filled is refused at its turn and the
   next in line gets what is left);
4. writes every new reservation with multi-row inserts and ONE ``reserved`` update per SKU;
5. commits, and only then answers every waiter.

The row lock is taken once per batch instead of once per buyer, which is what makes
thousands of reservations per transaction possible (TigerBeetle batches the same way).
Several processes on one database stay correct because each batch still locks the rows
(SQLite: the batch's ``BEGIN IMMEDIATE`` holds the database write lock).

Confirms and releases join the same queue (of the first group) and the same transaction
(``apply_mixed``; the rules for them are in ``coalescing_transitions``), so in one process
only one transaction at a time holds the hot stock rows and none waits for another's
locks; expiry uses the shared store's sweep, which is already batched (one aggregated
update per 1,000 holds).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from stockguard import domain
from stockguard.domain import ReserveOutcome, ReserveRequest, StockguardError, StockLevel
from stockguard.domain.locations import AllocationPolicy, Location, LocationLevel
from stockguard.stores import located
from stockguard.stores.contract import DuplicateKey, Store, StoreTx
from stockguard.stores.operations import customer_units
from stockguard.strategies.base import Strategy
from stockguard.strategies.batch_writer import BatchWriter
from stockguard.strategies.coalescing_transitions import (
    Transition,
    TransitionResult,
    apply_transitions,
    decide_transitions,
    lock_elsewhere,
    lock_reservations,
    skus_of,
    write_transitions,
)

BATCH_SIZE_MAX = 2_000
"""Requests decided in one transaction: big enough to amortise the lock and the commit."""
QUEUE_DEPTH_MAX = 20_000
"""Requests waiting per group; beyond it a request is answered Overloaded at once."""
GROUP_COUNT_DEFAULT = 1
"""Writer tasks per process; a hold goes to the group of its first (smallest) SKU.

One by default: the writers of one process share its event loop, and orders that span
SKUs put the hottest rows in every group's batches, so several groups only wait on each
other's row locks (mixed workload on PostgreSQL: 3,100 holds/s with 4 groups against
5,000 with one, same run; docs/benchmarks.md#mixed-workload-coalescing-vs-redis). More
groups can pay where the SKU sets of the groups do not meet."""
DUPLICATE_RETRY_MAX = 3
"""Re-runs of a batch that met an order_id committed meanwhile by another process."""
CLOSE_S_MAX = 30.0
"""How long ``close()`` waits for the writers to answer what they already accepted."""

Result = ReserveOutcome | StockguardError


async def apply_batch(store: Store, requests: Sequence[ReserveRequest]) -> list[Result]:
    """Decides and writes a batch of reservation requests in ONE transaction.

    Returns one answer per request, in order: a ``ReserveOutcome`` (new hold or replay) or
    the typed error that request gets (OutOfStock, UnknownSku, IdempotencyConflict). A
    transaction the store cannot run (StoreUnavailable…) answers every request with that
    error. Reusable by any queue worker that has a batch in hand (the Redis queue too).
    """
    if not requests:
        return []
    for _attempt in range(DUPLICATE_RETRY_MAX):
        try:
            return await store.run(lambda: _apply_once(store, requests))
        except DuplicateKey:
            # Another process committed one of these order_ids between our look-up and our
            # insert; the batch rolled back whole. Re-run it: the look-up now sees that row.
            continue
        except StockguardError as error:
            return [copy.copy(error) for _ in requests]
    return [
        domain.StoreUnavailable("order ids kept colliding with another writer") for _ in requests
    ]


async def _apply_once(store: Store, requests: Sequence[ReserveRequest]) -> list[Result]:
    """One attempt at the batch's transaction.

    The look-ups that need no lock come first; the stock rows are locked last, so the
    hottest rows of the shop (every other writer of this process and of others wants
    them too) are held only for the lock, the two inserts, one stock update and the
    commit. The order_id look-up needs no lock: an order_id committed by another writer
    after it fails our insert on the unique index and ``apply_batch`` re-runs the batch.
    """
    async with store.transaction() as tx:
        now_ms = await tx.now_ms()
        earlier = await tx.reservations_by_order([request.order_id for request in requests])
        levels = await tx.levels(
            sorted({line.sku for request in requests for line in request.lines}), lock=True
        )
        units = await customer_units(tx, levels, requests)
        batch = await located_batch(tx, store, levels, requests)
        after, results = decide_batch(levels, earlier, requests, store.new_id, now_ms, units, batch)
        created = [
            result.reservation
            for result in results
            if isinstance(result, ReserveOutcome) and result.created
        ]
        if created:
            await tx.insert_reservations(created)
            if batch is None:
                await tx.move_levels(
                    {sku: (0, after[sku].reserved - levels[sku].reserved) for sku in levels},
                    now_ms,
                )
            else:
                await located.write(tx, *located.deltas(batch.before, batch.levels), now_ms)
            await tx.commit()
        return results


@dataclasses.dataclass(slots=True)
class LocatedBatch:
    """A batch with a SKU stocked at several locations, or a pinned line: decided by the
    allocation policy on every level of its SKUs (docs/locations.md#how-each-strategy-uses-it)."""

    stock: dict[str, StockLevel]
    """The SKU rows as locked (their ``located`` and caps)."""
    before: dict[str, dict[str, LocationLevel]]
    """Every level of the batch's SKUs as locked (after the batch's endings, if any)."""
    levels: dict[str, dict[str, LocationLevel]]
    """The same, as the requests decided so far left them."""
    locations: dict[str, Location]
    policy: AllocationPolicy


async def located_batch(
    tx: StoreTx,
    store: Store,
    levels: dict[str, StockLevel],
    requests: Sequence[ReserveRequest],
    ended: dict[tuple[str, str], tuple[int, int]] | None = None,
) -> LocatedBatch | None:
    """The batch's location state, or None (and no query) when no SKU of it is stocked
    anywhere but the default location and no line is pinned elsewhere: the batch is then
    decided as it always was. ``ended``: changes the batch's endings make at other
    locations, applied to the levels read."""
    if not any(level.located for level in levels.values()) and not any(
        located.pinned_elsewhere(request) for request in requests
    ):
        return None
    before = await located.by_location(tx, levels, lock=True)
    for (sku, code), (on_hand, reserved) in (ended or {}).items():
        if sku in before and code in before[sku]:
            level = before[sku][code]
            before[sku][code] = dataclasses.replace(
                level, on_hand=level.on_hand + on_hand, reserved=level.reserved + reserved
            )
    return LocatedBatch(
        levels,
        before,
        {sku: dict(by_code) for sku, by_code in before.items()},
        await tx.locations(),
        store.allocation_policy,
    )


async def apply_mixed(
    store: Store, counters: Counter[str], items: Sequence[ReserveRequest | Transition]
) -> list[Result | TransitionResult]:
    """Holds, confirms and releases that queued together, decided in ONE transaction.

    In one process every writer shares one event loop, and on a real shop they all want
    the same hot stock rows: with a writer for holds and another for confirms and
    releases, each batch of one waited at the row lock for the other's transaction, which
    in turn waited for the event loop to answer the first one's buyers (the ~43 ms
    batches of docs/benchmarks.md#mixed-workload-coalescing-vs-redis). Here the two are
    one transaction: lock the confirmed and released reservations (id order), then the
    stock rows of every line of the batch (SKU order, the order every writer uses), end
    the reservations in arrival order, decide the holds in arrival order on what is left,
    write each kind of row in one statement, commit once.

    Ending before holding is a valid order: nothing in the batch has been answered yet, so
    the requests are concurrent and any order is a correct one; and a confirm leaves
    ``available`` as it was, a release or an expiry only adds to it. Answers come in the
    order of ``items``.
    """
    holds = [item for item in items if isinstance(item, ReserveRequest)]
    transitions = [item for item in items if not isinstance(item, ReserveRequest)]
    if transitions:
        counters["coalescing_transition_batches"] += 1
        counters["coalescing_transition_requests"] += len(transitions)
    if not transitions:
        hold_results: Sequence[Result | TransitionResult] = await apply_batch(store, holds)
        return list(hold_results)
    if not holds:
        return list(await apply_transitions(store, transitions))
    results: list[Result | TransitionResult] = []
    for _attempt in range(DUPLICATE_RETRY_MAX):
        try:
            hold_answers, transition_answers = await store.run(
                lambda: _apply_mixed_once(store, holds, transitions)
            )
        except DuplicateKey:
            continue  # as in apply_batch: the look-up of the re-run sees that order_id
        except StockguardError as error:
            return [copy.copy(error) for _ in items]
        answers = iter(hold_answers), iter(transition_answers)
        results = [next(answers[0 if isinstance(item, ReserveRequest) else 1]) for item in items]
        return results
    return [domain.StoreUnavailable("order ids kept colliding with another writer") for _ in items]


async def _apply_mixed_once(
    store: Store, holds: Sequence[ReserveRequest], transitions: Sequence[Transition]
) -> tuple[list[Result], list[TransitionResult]]:
    async with store.transaction() as tx:
        now_ms = await tx.now_ms()
        earlier = await tx.reservations_by_order([request.order_id for request in holds])
        current = await lock_reservations(tx, transitions)
        skus = {line.sku for request in holds for line in request.lines}
        levels = await tx.levels(sorted(skus.union(skus_of(current))), lock=True)
        elsewhere = await lock_elsewhere(tx, current)
        plan = decide_transitions(
            current,
            {sku: level.on_hand for sku, level in levels.items()},
            transitions,
            now_ms,
            {key: level.on_hand for key, level in elsewhere.items()},
        )
        ended = {
            sku: dataclasses.replace(
                level,
                on_hand=level.on_hand + plan.deltas[sku][0],
                reserved=level.reserved + plan.deltas[sku][1],
            )
            if sku in plan.deltas
            else level
            for sku, level in levels.items()
        }
        # Releases of this batch are not written yet, so a capped customer's count may
        # still include them: a cap can only refuse more here, never grant past itself.
        units = await customer_units(tx, levels, holds)
        batch = await located_batch(tx, store, ended, holds, dict(plan.elsewhere))
        after, results = decide_batch(ended, earlier, holds, store.new_id, now_ms, units, batch)
        created = [
            result.reservation
            for result in results
            if isinstance(result, ReserveOutcome) and result.created
        ]
        if created or plan.ended:
            await tx.insert_reservations(created)
            if batch is None:
                held = {sku: after[sku].reserved - ended[sku].reserved for sku in ended}
                await write_transitions(tx, plan, now_ms, reserved_too=held)
            else:
                at_default, at_others = located.deltas(batch.before, batch.levels)
                await write_transitions(
                    tx,
                    plan,
                    now_ms,
                    reserved_too={sku: change[1] for sku, change in at_default.items()},
                    elsewhere_too={key: change[1] for key, change in at_others.items()},
                )
            await tx.commit()
        return results, plan.results


def decide_batch(
    levels: dict[str, StockLevel],
    earlier: dict[str, domain.Reservation],
    requests: Sequence[ReserveRequest],
    new_id: Callable[[], str],
    now_ms: int,
    units: domain.CustomerUnits | None = None,
    batch: LocatedBatch | None = None,
) -> tuple[dict[str, StockLevel], list[Result]]:
    """The whole batch's answers, as if the requests had run one by one in arrival order.

    ``earlier`` holds the reservations already stored for the batch's order_ids. Pure: the
    caller writes what this returns. A repeated order_id inside the batch is answered from
    its first occurrence (granted: a replay or a conflict; refused with the same lines: the
    same refusal); one that differs from a refused first occurrence is decided in a later
    round, so no repeated order_id ever creates two holds. ``units``: the per-customer
    counts of the batch's capped SKUs, read on the locked rows (None: no SKU is capped).
    ``batch``: the location state of a batch the allocation policy decides
    (``located_batch``), updated in place; the returned levels are then ``levels``.
    """
    results: list[Result | None] = [None] * len(requests)
    pending: list[int] = []
    for index, request in enumerate(requests):
        found = earlier.get(request.order_id)
        if found is not None:
            results[index] = domain.replay_or_conflict(found, request)
            continue
        missing = [line.sku for line in request.lines if line.sku not in levels]
        if missing:
            results[index] = domain.UnknownSku(missing)
            continue
        pending.append(index)

    current = dict(levels)
    granted: dict[str, domain.Reservation] = {}
    counted = dict(units) if units is not None else None
    while pending:
        firsts: dict[str, int] = {}
        repeats: list[int] = []
        for index in pending:
            if requests[index].order_id in firsts or requests[index].order_id in granted:
                repeats.append(index)
            else:
                firsts[requests[index].order_id] = index
        if batch is not None:
            _decide_located(batch, requests, firsts, results, granted, counted, new_id, now_ms)
        else:
            current = _decide(current, requests, firsts, results, granted, counted, new_id, now_ms)
        pending = []
        for index in repeats:
            request = requests[index]
            if request.order_id in granted:
                results[index] = domain.replay_or_conflict(granted[request.order_id], request)
                continue
            first = requests[firsts[request.order_id]]
            if first.lines == request.lines:
                results[index] = copy.copy(results[firsts[request.order_id]])
            else:
                pending.append(index)
    assert all(result is not None for result in results)
    return current, [result for result in results if result is not None]


def _decide(
    current: dict[str, StockLevel],
    requests: Sequence[ReserveRequest],
    firsts: dict[str, int],
    results: list[Result | None],
    granted: dict[str, domain.Reservation],
    counted: dict[tuple[str, str], int] | None,
    new_id: Callable[[], str],
    now_ms: int,
) -> dict[str, StockLevel]:
    """One round of ``decide_batch``: the first occurrence of each order_id, in order."""
    current, decisions = domain.decide_in_order(
        current, [requests[index] for index in firsts.values()], counted
    )
    for index, decision in zip(firsts.values(), decisions, strict=True):
        if decision.held:
            reservation = domain.new_reservation(
                requests[index], new_id(), now_ms, decision.backordered
            )
            granted[reservation.order_id] = reservation
            results[index] = ReserveOutcome(reservation, created=True)
            if counted is not None:  # a later round sees this round's grants
                domain.count_hold(counted, requests[index])
        elif decision.refused is not None:
            results[index] = decision.refused
        else:
            results[index] = domain.OutOfStock(decision.shortfall)
    return current


def _decide_located(
    batch: LocatedBatch,
    requests: Sequence[ReserveRequest],
    firsts: dict[str, int],
    results: list[Result | None],
    granted: dict[str, domain.Reservation],
    counted: dict[tuple[str, str], int] | None,
    new_id: Callable[[], str],
    now_ms: int,
) -> None:
    """One round of ``decide_batch`` by the allocation policy (``located.decide``)."""
    chosen = [requests[index] for index in firsts.values()]
    batch.levels, decisions = located.decide(
        batch.stock, batch.levels, batch.locations, chosen, batch.policy, counted
    )
    for index, decision in zip(firsts.values(), decisions, strict=True):
        if decision.held:
            reservation = located.new_reservation(batch.stock, decision, new_id(), now_ms)
            granted[reservation.order_id] = reservation
            results[index] = ReserveOutcome(reservation, created=True)
            if counted is not None:  # a later round sees this round's grants
                domain.count_hold(counted, requests[index])
        else:
            results[index] = located.refusal(decision)


class CoalescingStrategy(Strategy):
    name = "coalescing"

    def __init__(
        self,
        store: Store,
        *,
        batch_size_max: int = BATCH_SIZE_MAX,
        queue_depth_max: int = QUEUE_DEPTH_MAX,
        group_count: int = GROUP_COUNT_DEFAULT,
        **options: Any,
    ) -> None:
        super().__init__(store, **options)
        assert 1 <= group_count <= 64
        self.group_count = group_count
        self.burst_in_flight = batch_size_max  # one batch is what it does at once
        sizes = {"batch_size_max": batch_size_max, "queue_depth_max": queue_depth_max}
        batch = functools.partial(apply_mixed, store, self.counters)
        self._groups = [
            BatchWriter("coalescing", batch, self.counters, **sizes) for _ in range(group_count)
        ]
        """One writer per SKU group; confirms and releases join the first group's batches."""
        self._writers = tuple(self._groups)

    async def start(self) -> None:
        for writer in self._writers:
            writer.start()

    async def close(self) -> None:
        """Stops taking requests, answers every request already queued, then stops."""
        await asyncio.gather(*(writer.close(CLOSE_S_MAX) for writer in self._writers))

    def group_of(self, request: ReserveRequest) -> int:
        # crc32, not hash(): the same SKU maps to the same group in every process and run.
        return zlib.crc32(request.lines[0].sku.encode()) % self.group_count

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        outcome: ReserveOutcome = await self._groups[self.group_of(request)].submit(request)
        return outcome

    async def confirm(self, reservation_id: str) -> domain.Reservation:
        result: domain.Reservation = await self._groups[0].submit(
            (reservation_id, domain.Status.CONFIRMED)
        )
        return result

    async def release(self, reservation_id: str) -> domain.Reservation:
        result: domain.Reservation = await self._groups[0].submit(
            (reservation_id, domain.Status.RELEASED)
        )
        return result
