"""Confirm and release, batched like reservations: one transaction per batch.

After a flash sale the same hot row takes the payments: one transaction per confirm
would queue every payer behind the row lock again (and on SQLite pay one fsync each).
The coalescing strategy queues confirms and releases too, and each batch

1. locks the batch's reservation rows in id order, then the stock rows they name in SKU
   order (the order every other writer uses);
2. applies the requests in arrival order with the pure ``domain.ending``
   (a repeat of the same id in the batch sees the state the earlier one left; a hold past
   its expiry by the database clock ends as expired, and a confirm of it is refused);
3. writes the status changes, the stock changes and one ledger entry per sold line
   whose ``on_hand_after`` is exact (computed in order from the locked row), each as ONE
   statement on PostgreSQL whatever the batch size (``postgres.PostgresTx``); commits;
   then the writer answers every waiter.

The coalescing writer runs these steps inside the same transaction as the holds that
queued with them (``coalescing.apply_mixed``): hence the pieces below (lock, a pure
decision, write) besides ``apply_transitions``, which runs a batch of endings alone.
Expiry already runs batched in the shared store (one update per 1,000 holds).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from collections.abc import Sequence

from stockguard import domain
from stockguard.domain import DEFAULT_LOCATION_CODE, Movement, Reservation, Status, StockguardError
from stockguard.domain.locations import LocationLevel
from stockguard.stores import located
from stockguard.stores.contract import Store, StoreTx

Transition = tuple[str, Status]
"""(reservation_id, Status.CONFIRMED or Status.RELEASED)."""
TransitionResult = Reservation | StockguardError


async def apply_transitions(store: Store, requests: Sequence[Transition]) -> list[TransitionResult]:
    """Confirms and releases a batch in ONE transaction; one answer per request, in order.

    An answer is the reservation as it now is, or the typed error for that request
    (ReservationNotFound, ReservationExpired, InvalidState); a transaction the store cannot
    run answers every request with that error.
    """
    if not requests:
        return []
    try:
        return await store.run(lambda: _apply_once(store, requests))
    except StockguardError as error:
        return [copy.copy(error) for _ in requests]


async def _apply_once(store: Store, requests: Sequence[Transition]) -> list[TransitionResult]:
    async with store.transaction() as tx:
        now_ms = await tx.now_ms()
        current = await lock_reservations(tx, requests)
        levels = await tx.levels(skus_of(current), lock=True)
        elsewhere = await lock_elsewhere(tx, current)
        plan = decide_transitions(
            current,
            {sku: lv.on_hand for sku, lv in levels.items()},
            requests,
            now_ms,
            {key: level.on_hand for key, level in elsewhere.items()},
        )
        if plan.ended:
            await write_transitions(tx, plan, now_ms)
            await tx.commit()
        return plan.results


@dataclasses.dataclass(slots=True)
class TransitionPlan:
    """What a batch of confirms and releases writes, decided on locked rows."""

    results: list[TransitionResult]
    """One answer per request, in order."""
    ended: dict[str, Status] = dataclasses.field(default_factory=dict)
    """Reservation id -> the terminal status it moves to (each id once)."""
    deltas: defaultdict[str, tuple[int, int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: (0, 0))
    )
    """SKU -> (on_hand change, reserved change) of its row (the default location's level)."""
    elsewhere: defaultdict[tuple[str, str], tuple[int, int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: (0, 0))
    )
    """(SKU, location) -> the same, for units held at other locations (docs/locations.md)."""
    movements: list[Movement] = dataclasses.field(default_factory=list)
    """One ledger entry per sold line."""


async def lock_reservations(tx: StoreTx, requests: Sequence[Transition]) -> dict[str, Reservation]:
    """The batch's reservations, their rows locked in id order (before any stock row)."""
    return await tx.reservations_by_id([rid for rid, _ in requests], lock=True)


def skus_of(reservations: dict[str, Reservation]) -> list[str]:
    return sorted({line.sku for r in reservations.values() for line in r.lines})


async def lock_elsewhere(
    tx: StoreTx, reservations: dict[str, Reservation]
) -> dict[tuple[str, str], LocationLevel]:
    """The other-location levels the reservations hold units at, locked after the SKU rows
    (none, and no query, when no line has such an allocation: docs/locations.md)."""
    lines = [line for r in reservations.values() for line in r.lines if line.allocations]
    if not located.has_elsewhere(lines):
        return {}
    skus = sorted({line.sku for line in lines})
    found = await tx.location_levels(skus, lock=True)
    return {(sku, code): level for sku, by_code in found.items() for code, level in by_code.items()}


def decide_transitions(
    current: dict[str, Reservation],
    on_hand: dict[str, int],
    requests: Sequence[Transition],
    now_ms: int,
    on_hand_elsewhere: dict[tuple[str, str], int] | None = None,
) -> TransitionPlan:
    """The batch's answers and writes, as if the requests had run one by one in order.

    Pure: ``current`` (the locked reservations) and ``on_hand`` (of their SKUs, read
    under lock) are updated in place as the requests are applied, so a repeat of an id
    sees the state the earlier one left and each ledger entry's ``on_hand_after`` is exact.
    """
    plan = TransitionPlan(results=[])
    elsewhere = on_hand_elsewhere if on_hand_elsewhere is not None else {}

    def end(reservation: Reservation, status: Status) -> Reservation:
        plan.ended[reservation.id] = status  # once per id: a terminal state never changes
        for line in reservation.lines:
            for allocation in line.drawn():  # exactly where its units are held
                quantity = allocation.quantity
                sold = quantity if status is Status.CONFIRMED else 0
                if allocation.location == DEFAULT_LOCATION_CODE:
                    d_on_hand, d_reserved = plan.deltas[line.sku]
                    plan.deltas[line.sku] = (d_on_hand - sold, d_reserved - quantity)
                    if sold:
                        on_hand[line.sku] -= sold
                        after = on_hand[line.sku]
                else:
                    key = (line.sku, allocation.location)
                    d_on_hand, d_reserved = plan.elsewhere[key]
                    plan.elsewhere[key] = (d_on_hand - sold, d_reserved - quantity)
                    if sold:
                        elsewhere[key] -= sold
                        after = elsewhere[key]
                if sold:
                    plan.movements.append(
                        Movement(
                            now_ms,
                            line.sku,
                            -sold,
                            after,
                            "sale",
                            reservation.id,
                            allocation.location,
                        )
                    )
        current[reservation.id] = dataclasses.replace(reservation, status=status)
        return current[reservation.id]

    for reservation_id, target in requests:
        found = current.get(reservation_id)
        if found is None:
            plan.results.append(domain.ReservationNotFound(reservation_id))
            continue
        ending = domain.ending(found, target, now_ms)  # docs/design.md#one-clock
        if ending.writes is not None:
            ended = end(found, ending.writes)
            plan.results.append(ended if isinstance(ending.answer, Reservation) else ending.answer)
        else:
            plan.results.append(ending.answer)
    return plan


async def write_transitions(
    tx: StoreTx,
    plan: TransitionPlan,
    now_ms: int,
    *,
    reserved_too: dict[str, int] | None = None,
    elsewhere_too: dict[tuple[str, str], int] | None = None,
) -> None:
    """Writes ``plan`` on the rows locked for it: status changes, one stock update for every
    SKU (plus ``reserved_too``, the holds of the same transaction), the ledger."""
    count = await tx.end_each(plan.ended, now_ms)
    assert count == len(plan.ended), "the rows were locked as held"
    deltas = dict(plan.deltas)
    for sku, reserved in (reserved_too or {}).items():
        on_hand_change, reserved_change = deltas.get(sku, (0, 0))
        deltas[sku] = (on_hand_change, reserved_change + reserved)
    await tx.move_levels(deltas, now_ms)
    elsewhere = dict(plan.elsewhere)
    for key, reserved in (elsewhere_too or {}).items():
        on_hand_change, reserved_change = elsewhere.get(key, (0, 0))
        elsewhere[key] = (on_hand_change, reserved_change + reserved)
    if elsewhere:
        await tx.move_location_levels(elsewhere, now_ms)
    await tx.record_movements(plan.movements)
