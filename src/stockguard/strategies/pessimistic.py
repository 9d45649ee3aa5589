"""Lock, check, write (docs/design.md#pessimistic): ``SELECT … FOR UPDATE``, rows in SKU order.

On SQLite the transaction's ``BEGIN IMMEDIATE`` already holds the database's write lock.
The decision itself is the pure domain rule ``domain.hold`` applied to the locked rows.
"""

from __future__ import annotations

from stockguard import domain
from stockguard.domain import ReserveOutcome, ReserveRequest
from stockguard.stores import located
from stockguard.stores.operations import check_customer, customer_units
from stockguard.stores.sql.store import DuplicateKey
from stockguard.strategies.base import REFUSALS, Strategy


class PessimisticStrategy(Strategy):
    name = "pessimistic"

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        async def work() -> ReserveOutcome:
            async with self.store.transaction() as tx:
                now_ms = await tx.now_ms()
                levels = await tx.levels(request.skus, lock=True)
                if located.needs_locations(levels, request):
                    # Stocked at several locations, or pinned: the allocation policy
                    # decides on every level, locked after the rows (docs/locations.md).
                    policy = self.store.allocation_policy
                    reservation = await located.hold_locked(
                        tx, request, levels, policy, self.store.new_id, now_ms
                    )
                    await tx.commit()
                    return ReserveOutcome(reservation, created=True)
                # The caps' counts read on the locked rows: no hold of these SKUs commits
                # before this one does (docs/design.md#per-customer-caps).
                check_customer(levels, await customer_units(tx, levels, [request]), request)
                domain.hold(levels, request.lines)  # raises OutOfStock / UnknownSku
                await tx.add_reserved({line.sku: line.quantity for line in request.lines}, now_ms)
                reservation = domain.new_reservation(
                    request,
                    self.store.new_id(),
                    now_ms,
                    domain.backordered(levels, request.lines),
                )
                await tx.insert_reservations([reservation])
                await tx.commit()
                return ReserveOutcome(reservation, created=True)

        try:
            return await self.store.run(work)
        except DuplicateKey:
            return await self.store.replay_after_duplicate(request)
        except REFUSALS as refused:
            return await self.refused(request, refused)
