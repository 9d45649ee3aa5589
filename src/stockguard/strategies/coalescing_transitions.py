"""Confirm and release, batched like reservations: one transaction per batch.

After a flash sale the same hot row takes the payments: one transaction per confirm
would queue every payer behind the row lock again (and on SQLite pay one fsync each).
The coalescing strategy queues confirms and releases too, and each batch

1. locks the batch's reservation rows in id order, then the stock rows they name in SKU
   order (the order every other writer uses);
2. applies the requests in arrival order with the pure ``domain.check_transition``
   (a repeat of the same id in the batch sees the state the earlier one left; a hold past
   its expiry by the database clock ends as expired, and a confirm of it is refused);
3. writes the status changes, the stock changes and one ledger entry per sold line
   whose ``on_hand_after`` is exact (computed in order from the locked row), each as ONE
   statement on PostgreSQL whatever the batch size (``stores/sql/bulk.py``); commits;
   then the writer answers every waiter.

Expiry already runs batched in the shared store (one update per SKU per 1,000 holds).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from collections.abc import Sequence

from stockguard import domain
from stockguard.domain import Movement, Reservation, Status, StockguardError
from stockguard.stores.sql import bulk
from stockguard.stores.sql.store import SqlStore

Transition = tuple[str, Status]
"""(reservation_id, Status.CONFIRMED or Status.RELEASED)."""
TransitionResult = Reservation | StockguardError


async def apply_transitions(
    store: SqlStore, requests: Sequence[Transition]
) -> list[TransitionResult]:
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


async def _apply_once(store: SqlStore, requests: Sequence[Transition]) -> list[TransitionResult]:
    async with store.transaction() as tx:
        now_ms = await tx.now_ms()
        current = await bulk.reservations_by_id(tx, [rid for rid, _ in requests], lock=True)
        skus = sorted({line.sku for r in current.values() for line in r.lines})
        on_hand = {sku: level.on_hand for sku, level in (await tx.levels(skus, lock=True)).items()}
        ended: dict[str, Status] = {}
        deltas: defaultdict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
        movements: list[Movement] = []
        results: list[TransitionResult] = []

        def end(reservation: Reservation, status: Status) -> Reservation:
            ended[reservation.id] = status  # once per id: a terminal state never changes
            for line in reservation.lines:
                sold = line.quantity if status is Status.CONFIRMED else 0
                d_on_hand, d_reserved = deltas[line.sku]
                deltas[line.sku] = (d_on_hand - sold, d_reserved - line.quantity)
                if sold:
                    on_hand[line.sku] -= sold
                    movements.append(
                        Movement(now_ms, line.sku, -sold, on_hand[line.sku], "sale", reservation.id)
                    )
            current[reservation.id] = dataclasses.replace(reservation, status=status)
            return current[reservation.id]

        for reservation_id, target in requests:
            found = current.get(reservation_id)
            if found is None:
                results.append(domain.ReservationNotFound(reservation_id))
                continue
            if found.status is Status.HELD and now_ms >= found.expires_at_ms:
                expired = end(found, Status.EXPIRED)
                confirming = target is Status.CONFIRMED
                results.append(domain.ReservationExpired(reservation_id) if confirming else expired)
                continue
            try:
                changes = domain.check_transition(found, target, now_ms)
            except StockguardError as refused:
                results.append(refused)
                continue
            results.append(end(found, target) if changes else found)

        if ended:
            count = await bulk.end_reservations(tx, ended, now_ms)
            assert count == len(ended), "the rows were locked as held"
            await bulk.move_levels(tx, deltas, now_ms)
            await bulk.record_movements(tx, movements)
            await tx.commit()
        return results
