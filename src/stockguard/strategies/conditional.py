"""One transaction per request; the stock rule is the UPDATE's WHERE (docs/design.md#conditional).

``UPDATE … SET reserved = reserved + q WHERE sku = s AND on_hand - reserved >= q`` for each
line in SKU order; a line that updates no row means not enough stock, and the whole
transaction rolls back, so a multi-line hold is all or nothing. The database's row lock
serialises buyers of the same SKU: correct, simple, and as fast as one row lock allows.
"""

from __future__ import annotations

from typing import Any

from stockguard import domain
from stockguard.domain import Line, ReserveOutcome, ReserveRequest
from stockguard.stores import located
from stockguard.stores.contract import Store, StoreTx
from stockguard.stores.operations import customer_units
from stockguard.stores.sql.store import DuplicateKey
from stockguard.strategies.base import REFUSALS, Strategy


class _Located:
    """A line's SKU is stocked at several locations: the allocation policy decides."""


_LOCATED = _Located()


class ConditionalStrategy(Strategy):
    name = "conditional"

    def __init__(self, store: Store, **options: Any) -> None:
        super().__init__(store, **options)
        self._located: set[str] = set()
        """SKUs this process has seen stocked at several locations: their holds skip the
        conditional ``UPDATE`` (it changes no located row) and go to the location path at
        once. A SKU stays located once it is, so this set is never stale the wrong way;
        one not in it yet is found by its first hold."""

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
                            self._located.add(line.sku)  # for good: never unset
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

        if (self._located and not self._located.isdisjoint(request.skus)) or (
            located.pinned_elsewhere(request)
        ):
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
        """A request on SKUs stocked at several locations, or pinned elsewhere
        (docs/locations.md#how-each-strategy-uses-it): decided by the allocation policy on
        its levels locked, rows then other levels, as pessimistic does.

        Not one conditional ``UPDATE`` per allocation: a hold drawing only from another
        location would take that level's lock before the SKU row's key-share lock its line
        insert takes (the foreign key), the reverse of the order every locking writer
        uses, and deadlock against them (measured: the 500-buyer location case on
        PostgreSQL went from seconds to pool timeouts)."""
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
