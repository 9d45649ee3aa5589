"""Read the version, write only if it is unchanged, retry otherwise (docs/design.md#optimistic).

No lock is held while deciding; the write ``UPDATE … WHERE version = :read`` fails when
another buyer got there first, and the request starts over after a jittered backoff.
Retries are bounded (unbounded retries become a retry storm: docs/design.md#seed-002) and
counted; a request that keeps losing is answered "overloaded", never left spinning.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from stockguard import domain
from stockguard.domain import ReserveOutcome, ReserveRequest
from stockguard.stores import located
from stockguard.stores.contract import StoreTx
from stockguard.stores.operations import check_customer, customer_units
from stockguard.stores.sql.store import DuplicateKey, SqlStore
from stockguard.strategies.base import REFUSALS, Strategy

RETRY_MAX = 64
BACKOFF_S_BASE = 0.001
BACKOFF_S_MAX = 0.050


class OptimisticStrategy(Strategy):
    name = "optimistic"

    def __init__(self, store: SqlStore, *, retry_max: int = RETRY_MAX, **options: Any) -> None:
        super().__init__(store, **options)
        assert 1 <= retry_max <= 1_000
        self.retry_max = retry_max

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        for attempt in range(self.retry_max):
            try:
                outcome = await self.store.run(lambda: self._attempt(request))
            except DuplicateKey:
                return await self.store.replay_after_duplicate(request)
            except REFUSALS as refused:
                return await self.refused(request, refused)
            if outcome is not None:
                return outcome
            self.counters["optimistic_retries"] += 1
            # Full jitter: spreads the losers out so they do not collide again in step.
            await asyncio.sleep(random.uniform(0, min(BACKOFF_S_MAX, BACKOFF_S_BASE * 2**attempt)))
        self.counters["optimistic_exhausted"] += 1
        raise domain.Overloaded(f"stock changed under {self.retry_max} attempts in a row")

    async def _attempt(self, request: ReserveRequest) -> ReserveOutcome | None:
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            levels = await tx.levels(request.skus)
            if located.needs_locations(levels, request):
                return await self._attempt_located(tx, request, levels, now_ms)
            # Counts read without a lock: a hold of the same SKU committed after this read
            # moved the version, so the write below fails and the attempt starts over.
            check_customer(levels, await customer_units(tx, levels, [request]), request)
            after = domain.hold(levels, request.lines)  # raises OutOfStock / UnknownSku
            for line in request.lines:
                if not await tx.write_reserved_if_version(
                    levels[line.sku], after[line.sku].reserved, now_ms
                ):
                    return None  # somebody else wrote first: roll back and retry
            reservation = domain.new_reservation(
                request, self.store.new_id(), now_ms, domain.backordered(levels, request.lines)
            )
            await tx.insert_reservations([reservation])
            await tx.commit()
            return ReserveOutcome(reservation, created=True)

    async def _attempt_located(
        self,
        tx: StoreTx,
        request: ReserveRequest,
        levels: dict[str, domain.StockLevel],
        now_ms: int,
    ) -> ReserveOutcome | None:
        """A SKU stocked at several locations (docs/locations.md): decided by the allocation
        policy on every level as read, unlocked; each level it changes is written only if
        its version is unchanged, so a level moved meanwhile rolls the whole hold back and
        it is decided again."""
        missing = [sku for sku in request.skus if sku not in levels]
        if missing:
            raise domain.UnknownSku(missing)
        before = await located.by_location(tx, levels, lock=False)
        units = await customer_units(tx, levels, [request])
        after, (decision,) = located.decide(
            levels, before, await tx.locations(), [request], self.store.allocation_policy, units
        )
        if not decision.held:
            raise located.refusal(decision)
        # Rows before other levels, each in order (the order every writer locks them in).
        changed = sorted(
            (
                (code != located.DEFAULT, sku, code)
                for sku, by_code in after.items()
                for code, level in by_code.items()
                if level.reserved != before[sku][code].reserved
            )
        )
        for _, sku, code in changed:
            reserved = after[sku][code].reserved
            if code == located.DEFAULT:
                written = await tx.write_reserved_if_version(levels[sku], reserved, now_ms)
            else:
                written = await tx.write_location_reserved_if_version(
                    before[sku][code], reserved, now_ms
                )
            if not written:
                return None  # somebody else wrote first: roll back and retry
        reservation = located.new_reservation(levels, decision, self.store.new_id(), now_ms)
        await tx.insert_reservations([reservation])
        await tx.commit()
        return ReserveOutcome(reservation, created=True)
