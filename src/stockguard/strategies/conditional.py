"""One transaction per request; the stock rule is the UPDATE's WHERE (docs/design.md#conditional).

``UPDATE … SET reserved = reserved + q WHERE sku = s AND on_hand - reserved >= q`` for each
line in SKU order; a line that updates no row means not enough stock, and the whole
transaction rolls back, so a multi-line hold is all or nothing. The database's row lock
serialises buyers of the same SKU: correct, simple, and as fast as one row lock allows.
"""

from __future__ import annotations

from stockguard import domain
from stockguard.domain import ReserveOutcome, ReserveRequest
from stockguard.stores.sql.store import DuplicateKey
from stockguard.strategies.base import Strategy


class ConditionalStrategy(Strategy):
    name = "conditional"

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        async def work() -> ReserveOutcome | None:
            # No idempotency look-up up front: the unique order_id catches a replay, and a
            # refused request checks for one (Strategy.refused), so new orders save a read.
            async with self.store.transaction() as tx:
                now_ms = await tx.now_ms()
                for line in request.lines:
                    if not await tx.add_reserved_if_available(line.sku, line.quantity, now_ms):
                        return None
                reservation = domain.new_reservation(request, self.store.new_id(), now_ms)
                await tx.insert_reservations([reservation])
                await tx.commit()
                return ReserveOutcome(reservation, created=True)

        try:
            outcome = await self.store.run(work)
        except DuplicateKey:
            return await self.store.replay_after_duplicate(request)
        if outcome is None:
            return await self.refused(request, await self.store.out_of_stock(request))
        return outcome
