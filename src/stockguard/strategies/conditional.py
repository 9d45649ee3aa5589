"""One transaction per request; the stock rule is the UPDATE's WHERE (docs/design.md#conditional).

``UPDATE … SET reserved = reserved + q WHERE sku = s AND on_hand - reserved >= q`` for each
line in SKU order; a line that updates no row means not enough stock, and the whole
transaction rolls back, so a multi-line hold is all or nothing. The database's row lock
serialises buyers of the same SKU: correct, simple, and as fast as one row lock allows.
"""

from __future__ import annotations

from stockguard import domain
from stockguard.domain import Line, ReserveOutcome, ReserveRequest
from stockguard.domain.locations import LocationDecision
from stockguard.stores import located
from stockguard.stores.contract import StoreTx
from stockguard.stores.operations import customer_units
from stockguard.stores.sql.store import DuplicateKey
from stockguard.strategies.base import REFUSALS, Strategy


class _Located:
    """A line's SKU is stocked at several locations: the allocation policy decides."""


_LOCATED = _Located()


class ConditionalStrategy(Strategy):
    name = "conditional"

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        async def work() -> ReserveOutcome | domain.StockguardError | None:
            # No idempotency look-up up front: the unique order_id catches a replay, and a
            # refused request checks for one (Strategy.refused), so new orders save a read.
            async with self.store.transaction() as tx:
                now_ms = await tx.now_ms()
                backordered: dict[str, int] = {}
                for line in request.lines:
                    if not await tx.add_reserved_if_available(line.sku, line.quantity, now_ms):
                        decided = await self._on_locked_row(tx, request, line, now_ms)
                        if isinstance(decided, _Located):
                            break  # rolled back: the location path below decides it all
                        if not isinstance(decided, int):
                            return decided
                        if decided:
                            backordered[line.sku] = decided
                else:
                    reservation = domain.new_reservation(
                        request, self.store.new_id(), now_ms, backordered
                    )
                    await tx.insert_reservations([reservation])
                    await tx.commit()
                    return ReserveOutcome(reservation, created=True)
            return await self._reserve_located(request)

        if located.pinned_elsewhere(request):
            work_first = lambda: self._reserve_located(request)  # noqa: E731
        else:
            work_first = work
        try:
            outcome = await self.store.run(work_first)
        except DuplicateKey:
            return await self.store.replay_after_duplicate(request)
        if outcome is None:
            return await self.refused(request, await self.store.out_of_stock(request))
        if isinstance(outcome, domain.StockguardError):
            return await self.refused(request, outcome)
        return outcome

    async def _on_locked_row(
        self, tx: StoreTx, request: ReserveRequest, line: Line, now_ms: int
    ) -> int | domain.StockguardError | _Located | None:
        """The line's conditional UPDATE changed no row: short, unknown, or a SKU with a
        per-customer cap or a backorder allowance (which the UPDATE leaves alone). Only
        then is the row read, and such a line decided on it locked
        (docs/design.md#per-customer-caps, docs/design.md#backorders): when held, the
        units it put on backorder (0 or more), else the refusal (None: out of stock, told
        by ``out_of_stock``); ``_LOCATED``: the SKU is stocked at several locations.

        A one-line request that was simply short is answered from this read, so a sold-out
        SKU's refusals still cost one read, as before (no second transaction)."""
        levels = await tx.levels([line.sku])
        level = levels.get(line.sku)
        if level is not None and level.located:
            return _LOCATED
        if level is None or (level.customer_max is None and not level.backorder_max):
            return domain.refusal(levels, request.lines) if len(request.lines) == 1 else None
        levels = await tx.levels([line.sku], lock=True)
        level = levels[line.sku]
        if level.customer_max is not None:
            refused = domain.customer_refusal(
                levels, await customer_units(tx, levels, [request]) or {}, request
            )
            if refused is not None:
                return refused
        if level.available < line.quantity:
            return domain.refusal(levels, [line])
        await tx.add_reserved({line.sku: line.quantity}, now_ms)
        return level.backordered(line.quantity)

    async def _reserve_located(
        self, request: ReserveRequest
    ) -> ReserveOutcome | domain.StockguardError | None:
        """A request on SKUs stocked at several locations, or pinned (docs/locations.md):
        decided by the allocation policy on the levels as read, then one conditional
        ``UPDATE`` per allocation (``available`` still covers it; from the shelf alone when
        it was decided as not backordered). An update that changes no row means the stock
        moved meanwhile: the transaction rolls back, and the request is decided again on
        the rows locked, so it is answered exactly. A capped SKU is decided locked."""
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            levels = await tx.levels(request.skus)
            missing = [sku for sku in request.skus if sku not in levels]
            if missing:
                return domain.UnknownSku(missing)
            if all(level.customer_max is None for level in levels.values()):
                before = await located.by_location(tx, levels, lock=False)
                _, (decision,) = located.decide(
                    levels,
                    before,
                    await tx.locations(),
                    [request],
                    self.store.allocation_policy,
                    None,
                )
                if not decision.held:
                    return located.refusal(decision)
                if await self._write_allocations(tx, decision, now_ms):
                    reservation = located.new_reservation(
                        levels, decision, self.store.new_id(), now_ms
                    )
                    await tx.insert_reservations([reservation])
                    await tx.commit()
                    return ReserveOutcome(reservation, created=True)
        self.counters["conditional_located_relocked"] += 1
        return await self._reserve_located_locked(request)

    async def _write_allocations(
        self, tx: StoreTx, decision: LocationDecision, now_ms: int
    ) -> bool:
        # Rows (the default location's levels) before other levels, each in order: the
        # order every writer locks them in, so two holds never wait on each other in a cycle.
        drawn = sorted(
            ((sku, a) for sku, allocations in decision.allocations.items() for a in allocations),
            key=lambda pair: (pair[1].location != located.DEFAULT, pair[0], pair[1].location),
        )
        if any(allocation.backordered for _, allocation in drawn):
            return False  # how many are backordered is exact only on locked rows
        for sku, allocation in drawn:
            if allocation.location == located.DEFAULT:
                ok = await tx.add_reserved_if_shelf(sku, allocation.quantity, now_ms)
            else:
                ok = await tx.add_location_reserved_if_available(
                    sku, allocation.location, allocation.quantity, True, now_ms
                )
            if not ok:
                return False
        return True

    async def _reserve_located_locked(
        self, request: ReserveRequest
    ) -> ReserveOutcome | domain.StockguardError | None:
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            levels = await tx.levels(request.skus, lock=True)
            try:
                policy = self.store.allocation_policy
                reservation = await located.hold_locked(
                    tx, request, levels, policy, self.store.new_id, now_ms
                )
            except REFUSALS as refused:
                return refused
            await tx.commit()
            return ReserveOutcome(reservation, created=True)
