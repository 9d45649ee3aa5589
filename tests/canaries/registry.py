"""Deliberately broken strategies: each makes one mistake a real strategy could make.

Test-only (never in ``stockguard.strategies``). Each must be caught by the contract suite
(tests/test_contract.py) and/or by the history checker (stockguard.verify.checker): see
tests/canaries/test_canaries.py, which asserts that each one IS caught. They are written
against the store contract, so they run on the in-memory store and on SQL alike.
"""

from __future__ import annotations

import asyncio

from stockguard import domain
from stockguard.domain import Reservation, ReserveOutcome, ReserveRequest, Status
from stockguard.strategies.base import Strategy
from stockguard.strategies.pessimistic import PessimisticStrategy


class CheckThenAct(Strategy):
    """Reads the stock in one transaction, yields (``await``), then writes ``reserved``
    in another, without checking again: two buyers both see the last unit."""

    name = "canary-check-then-act"

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        async with self.store.transaction(read_only=True) as tx:
            levels = await tx.levels(request.skus)
        try:
            domain.hold(levels, request.lines)
        except (domain.OutOfStock, domain.UnknownSku) as refused:
            return await self.refused(request, refused)
        await asyncio.sleep(0)  # the gap: another buyer decides on the same figures
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            await tx.add_reserved({line.sku: line.quantity for line in request.lines}, now_ms)
            reservation = domain.new_reservation(request, self.store.new_id(), now_ms)
            await tx.insert_reservations([reservation])
            await tx.commit()
        return ReserveOutcome(reservation, created=True)


class NonAtomicMultiLine(Strategy):
    """Holds line by line, one transaction each; a line that does not fit refuses the
    order but leaves the lines before it reserved (no rollback of the whole)."""

    name = "canary-non-atomic"

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        async with self.store.transaction(read_only=True) as tx:
            earlier = await self.store.replay(tx, request)
        if earlier is not None:
            return earlier
        for line in request.lines:
            async with self.store.transaction() as tx:
                now_ms = await tx.now_ms()
                fitted = await tx.add_reserved_if_available(line.sku, line.quantity, now_ms)
                await tx.commit()
            if not fitted:
                raise await self.store.out_of_stock(request)
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            reservation = domain.new_reservation(request, self.store.new_id(), now_ms)
            await tx.insert_reservations([reservation])
            await tx.commit()
        return ReserveOutcome(reservation, created=True)


class ConfirmAfterExpiry(PessimisticStrategy):
    """Confirms a held reservation whatever its ``expires_at``: the store's clock is not
    asked (docs/design.md#one-clock broken)."""

    name = "canary-confirm-after-expiry"

    async def confirm(self, reservation_id: str) -> Reservation:
        async with self.store.transaction() as tx:
            found = await tx.reservation(reservation_id, lock=True)
            if found is not None and found.status is Status.HELD:
                now_ms = await tx.now_ms()
                await tx.end_reservations([found.id], Status.CONFIRMED, now_ms)
                await tx.sell(found.lines, found.id, now_ms)
                await tx.commit()
        if found is None or found.status is not Status.HELD:
            return await super().confirm(reservation_id)  # not found, replays, refusals
        return Reservation(
            found.id,
            found.order_id,
            found.customer_id,
            Status.CONFIRMED,
            found.lines,
            found.expires_at_ms,
            found.created_at_ms,
        )


class ReleaseForgetsLine(PessimisticStrategy):
    """Releases a hold but gives back every line except the last one (an off-by-one)."""

    name = "canary-release-forgets-line"

    async def release(self, reservation_id: str) -> Reservation:
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            found = await tx.reservation(reservation_id, lock=True)
            if found is None:
                raise domain.ReservationNotFound(reservation_id)
            ending = domain.ending(found, Status.RELEASED, now_ms)
            if ending.writes is not None:
                await tx.end_reservations([found.id], ending.writes, now_ms)
                await tx.add_reserved({ln.sku: -ln.quantity for ln in found.lines[:-1]}, now_ms)
                await tx.commit()
        return ending.result()


class ReplayCreatesSecondHold(PessimisticStrategy):
    """Does not look the order_id up: a repeated request holds the stock again, under a
    derived order id (the unique index would refuse the same one)."""

    name = "canary-replay-second-hold"

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        async with self.store.transaction(read_only=True) as tx:
            earlier = await tx.reservation_by_order(request.order_id)
        if earlier is None:
            return await super().reserve(request)
        return await self._again(request)

    async def _again(self, request: ReserveRequest) -> ReserveOutcome:
        copy = ReserveRequest(
            f"{request.order_id}~{self.store.new_id()[:8]}",
            request.lines,
            request.ttl_s,
            request.customer_id,
        )
        outcome = await super().reserve(copy)
        reservation = outcome.reservation
        return ReserveOutcome(
            Reservation(
                reservation.id,
                request.order_id,  # answered under the order the caller sent
                reservation.customer_id,
                reservation.status,
                reservation.lines,
                reservation.expires_at_ms,
                reservation.created_at_ms,
            ),
            created=True,
        )


CANARIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        CheckThenAct,
        NonAtomicMultiLine,
        ConfirmAfterExpiry,
        ReleaseForgetsLine,
        ReplayCreatesSecondHold,
    )
}
