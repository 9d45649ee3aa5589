"""A hot SKU's stock in N bucket rows, so buyers lock different rows (docs/design.md#sharded).

A SKU's stock is its ``stock_levels`` row plus the sum of its ``stock_buckets`` rows. When
this strategy first meets a SKU it moves the row's *available* units into N buckets (the
row keeps exactly what its older holds need), and from then on:

* **reserve**: a conditional ``UPDATE`` on one random bucket; if that bucket is short, a
  plain read of all buckets says whether the SKU as a whole can fill the line (if not, it
  is out of stock without taking a lock); if it can, every bucket of the SKU is locked in
  bucket order, the line is filled from several buckets, and the buckets are rebalanced
  while they are locked. A line larger than any one bucket therefore still succeeds when
  the sum suffices. Which bucket gave which units is recorded (``reservation_buckets``)
  so confirm, release and expiry give back exactly those units.
* **available** is the sum; **confirm** locks the SKU's row (by writing its version) so
  that ledger entries see an exact on_hand; **admin edits** lock the row and every bucket
  and redistribute on_hand evenly (the rebalancing step); ``rebalance(sku, buckets=)``
  does the same on demand and can add buckets.

The stock rule holds per bucket (``CHECK 0 <= reserved <= on_hand``), so it holds for the
sum; every table read sums the row and its buckets (``audit``, ``stock``).
``stock_levels`` alone is NOT the whole stock of a sharded SKU: keeping it exact at every
commit would mean writing it on every reservation, which is the hot row again.

N is ``buckets`` (default 8) or ``buckets_by_sku[sku]``. SQLite locks the whole database
per write, so there buckets change nothing but cost a little; they pay on PostgreSQL and
MariaDB, where row locks are per row.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from stockguard import domain
from stockguard.domain import Line, Product, ProductSpec, ReserveOutcome, ReserveRequest
from stockguard.domain import StockLevel as Level
from stockguard.stores import located
from stockguard.stores.contract import StoreTx
from stockguard.stores.operations import customer_units, shown_levels
from stockguard.stores.sql import buckets as b
from stockguard.stores.sql.buckets import Bucket
from stockguard.stores.sql.store import DuplicateKey, SqlStore
from stockguard.stores.sql.tx import Tx
from stockguard.strategies.base import Strategy
from stockguard.strategies.sharded_writes import ShardedWrites

BUCKETS_DEFAULT = 8
BUCKETS_MAX = 64


class _FallBack:
    """A bucket was short: retry the request across all buckets of its SKUs."""


_FALL_BACK = _FallBack()


class _Relocated:
    """A SKU of the request turned out to be stocked elsewhere too: decide it by location."""


_RELOCATED = _Relocated()
_Attempt = ReserveOutcome | _FallBack | _Relocated | domain.StockguardError | None


class ShardedStrategy(Strategy):
    store: SqlStore  # buckets are SQL tables of their own
    name = "sharded"
    memory = False

    def __init__(
        self,
        store: SqlStore,
        *,
        buckets: int = BUCKETS_DEFAULT,
        buckets_by_sku: Mapping[str, int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(store, **options)
        self.buckets_default = buckets
        self.buckets_by_sku = dict(buckets_by_sku or {})
        for count in (buckets, *self.buckets_by_sku.values()):
            if not 1 <= count <= BUCKETS_MAX:
                raise ValueError(f"buckets must be 1-{BUCKETS_MAX}, not {count}")
        self._bucket_counts: dict[str, int] = {}
        """SKUs known to be sharded, with their bucket count (buckets are never removed)."""
        self.writes = ShardedWrites(store, self._bucket_counts, self.buckets_for)
        """Confirm, release, expiry and admin edits on buckets (``sharded_writes.py``)."""

    def buckets_for(self, sku: str) -> int:
        return self.buckets_by_sku.get(sku, self.buckets_default)

    # ------------------------------------------------------------------ reserve

    async def reserve(self, request: ReserveRequest) -> ReserveOutcome:
        await self.shard(request.skus)
        try:
            if located.pinned_elsewhere(request) or self._any_located(request):
                outcome = await self.store.run(lambda: self._attempt_located(request))
            else:
                outcome = await self.store.run(lambda: self._attempt(request, spread_out=True))
            if outcome is _RELOCATED:
                outcome = await self.store.run(lambda: self._attempt_located(request))
            if outcome is _FALL_BACK:
                self.counters["sharded_fallbacks"] += 1
                outcome = await self.store.run(lambda: self._attempt(request, spread_out=False))
        except DuplicateKey:
            return await self.store.replay_after_duplicate(request)
        if isinstance(outcome, ReserveOutcome):
            return outcome
        if isinstance(outcome, domain.StockguardError):
            return await self.refused(request, outcome)
        return await self.refused(request, await self._out_of_stock(request))

    async def _attempt(self, request: ReserveRequest, *, spread_out: bool) -> _Attempt:
        """One transaction. ``spread_out``: one random bucket per line, and on the first
        short bucket give up at once (rolling back) so the caller can fall back. Otherwise:
        every bucket of each line's SKU, locked in (sku, bucket) order, filled and evened.

        The fallback starts a NEW transaction rather than locking more buckets after a
        failed try: a failed conditional UPDATE may keep its row lock (InnoDB does), and
        locking the other buckets after it would break the lock order and deadlock.
        """
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            parts: list[tuple[str, int, int]] = []
            if not spread_out and not await self._enough(tx, request):
                return None  # the whole SKU is short: refused without taking a lock
            # The caps live on the SKU rows: read before the buckets are taken, so a hold
            # of an uncapped SKU keeps its bucket locked no longer than it did.
            policies = await tx.levels(request.skus)
            unknown = [sku for sku in request.skus if sku not in self._bucket_counts]
            if unknown:  # shard() just met every SKU that exists
                return domain.UnknownSku(unknown)
            if any(level.located for level in policies.values()):
                # Another process stocked it elsewhere (and folded its buckets) since
                # this one met it: from now on it is decided by the allocation policy.
                for sku, level in policies.items():
                    if level.located:
                        self._bucket_counts[sku] = 0
                return _RELOCATED
            backordered: dict[str, int] = {}
            for line in request.lines:
                count = self._bucket_counts[line.sku]
                if spread_out:
                    bucket = random.randrange(count)
                    if not await b.take_if_available(tx, line.sku, bucket, line.quantity):
                        # Sold out is the common case here: tell it in this transaction,
                        # whose own takes of the lines before are given back first.
                        mine = {sku: units for sku, _, units in parts}
                        short = await self._shortfalls(tx, request, mine)
                        return domain.OutOfStock(short) if short else _FALL_BACK
                    taken = [(bucket, line.quantity)]
                else:
                    filled = await self._fill(tx, line, backordered)
                    if filled is None:
                        return None
                    taken = filled
                parts.extend((line.sku, bucket, units) for bucket, units in taken)
            if any(level.customer_max is not None for level in policies.values()):
                capped = await self._cap_refusal(tx, request)
                if capped is not None:
                    return capped
            reservation = domain.new_reservation(request, self.store.new_id(), now_ms, backordered)
            await tx.insert_reservations([reservation])
            await b.record_parts(tx, [b.Part(reservation.id, *part) for part in parts])
            await tx.commit()
            return ReserveOutcome(reservation, created=True)

    def _any_located(self, request: ReserveRequest) -> bool:
        return any(self._bucket_counts.get(sku) == 0 for sku in request.skus)

    async def _attempt_located(self, request: ReserveRequest) -> _Attempt:
        """A request with a SKU stocked at several locations, or a line pinned elsewhere
        (docs/locations.md#how-each-strategy-uses-it). Such a SKU has no buckets (they
        were folded into its row when it was first stocked elsewhere): its levels are
        locked, rows then other locations, and the allocation policy decides on them.
        The request's other lines take their buckets first, as every sharded hold does
        (buckets before rows, the lock order of every sharded writer). One transaction."""
        async with self.store.transaction() as tx:
            now_ms = await tx.now_ms()
            unknown = [sku for sku in request.skus if sku not in self._bucket_counts]
            if unknown:
                return domain.UnknownSku(unknown)
            is_located = {sku for sku in request.skus if self._bucket_counts[sku] == 0}
            short: list[domain.Shortfall] = []
            parts: list[tuple[str, int, int]] = []
            backordered: dict[str, int] = {}
            for line in request.lines:
                if line.sku in is_located:
                    continue
                if line.location not in (None, domain.DEFAULT_LOCATION_CODE):
                    short.append(domain.Shortfall(line.sku, line.quantity, 0))
                    continue
                filled = await self._fill(tx, line, backordered)
                if filled is None:
                    return None
                parts.extend((line.sku, bucket, units) for bucket, units in filled)
            if short:
                return domain.OutOfStock(short)
            levels = await tx.levels(sorted(is_located), lock=True)
            sub = domain.ReserveRequest(
                request.order_id,
                tuple(line for line in request.lines if line.sku in is_located),
                request.ttl_s,
                request.customer_id,
                request.allocation_policy,
                request.split,
            )
            allocations: dict[str, tuple[domain.Allocation, ...]] = {}
            if sub.lines:
                before = await located.by_location(tx, levels, lock=True)
                units = await customer_units(tx, levels, [sub])
                after, (decision,) = located.decide(
                    levels,
                    before,
                    await tx.locations(),
                    [sub],
                    self.store.allocation_policy,
                    units,
                )
                if not decision.held:
                    return located.refusal(decision)
                await located.write(tx, *located.deltas(before, after), now_ms)
                allocations = dict(decision.allocations)
            if parts:  # the located lines' caps were checked with their decision
                capped = await self._cap_refusal(tx, request)
                if capped is not None:
                    return capped
            reservation = domain.new_reservation(
                request, self.store.new_id(), now_ms, backordered, allocations
            )
            await tx.insert_reservations([reservation])
            await b.record_parts(tx, [b.Part(reservation.id, *part) for part in parts])
            await tx.commit()
            return ReserveOutcome(reservation, created=True)

    async def _cap_refusal(
        self, tx: Tx, request: ReserveRequest
    ) -> domain.CustomerLimit | domain.InvalidInput | None:
        """Per-customer caps (docs/design.md#per-customer-caps), after the buckets are
        taken: a capped SKU's row is locked (buckets before rows, the lock order of every
        sharded writer) and read again, so its customer's count is read where no other
        hold of that SKU can commit in between."""
        levels = await tx.levels(request.skus, lock=True)
        locked = {sku: level for sku, level in levels.items() if level.customer_max is not None}
        if not locked:
            return None
        units = await tx.customer_units(domain.capped_pairs(locked, [request]))
        return domain.customer_refusal(locked, units, request)

    async def _shortfalls(
        self, tx: Tx, request: ReserveRequest, mine: Mapping[str, int] | None = None
    ) -> tuple[domain.Shortfall, ...]:
        """The lines the SKUs' buckets (read without locks) cannot fill now, if any.

        ``mine``: units this transaction took already, for lines before the short one. They
        are the request's own, about to be rolled back: counted as available again, else a
        multi-line order whose first line took a SKU's last unit would be refused for that
        unit ("available 0"), the admission would mark the SKU sold out, and later buyers
        of it would be refused while it is on the shelf (found by the model test,
        docs/reliability.md)."""
        available = await b.sellable(tx, request.skus)
        for sku, units in (mine or {}).items():
            available[sku] = available.get(sku, 0) + units
        return tuple(
            domain.Shortfall(line.sku, line.quantity, available.get(line.sku, 0))
            for line in request.lines
            if available.get(line.sku, 0) < line.quantity
        )

    async def _enough(self, tx: Tx, request: ReserveRequest) -> bool:
        """Whether the buckets, read without locks, hold enough for every line."""
        available = await b.sellable(tx, request.skus)
        return all(available.get(line.sku, 0) >= line.quantity for line in request.lines)

    async def _fill(
        self, tx: Tx, line: Line, backordered: dict[str, int]
    ) -> list[tuple[int, int]] | None:
        """The line's units from its locked buckets, evened out after. What they lack is
        held on the SKU's row (locked after the buckets, the lock order of every sharded
        writer) when its backorder allowance covers it; those units are the line's
        backordered ones, counted in ``backordered``."""
        rows = (await b.buckets(tx, [line.sku], lock=True)).get(line.sku, [])
        plan = b.fill(rows, line.quantity, partial=True)
        assert plan is not None
        on_row = line.quantity - sum(units for _, units in plan)
        if on_row:
            level = (await tx.levels([line.sku], lock=True)).get(line.sku)
            if level is None or not level.backorder_max or level.available < on_row:
                return None
            whole = (await b.totals(tx, [line.sku]))[line.sku]
            backordered[line.sku] = whole.backordered(line.quantity)
            await tx.add_reserved({line.sku: on_row}, await tx.now_ms())
        taken = dict(plan)
        after = [
            Bucket(r.sku, r.bucket, r.on_hand, r.reserved + taken.get(r.bucket, 0)) for r in rows
        ]
        # Every bucket is locked anyway: even them out so the next buyers find stock at once.
        await b.write(tx, b.spread(after, sum(r.on_hand for r in after)))
        self.counters["sharded_rebalances"] += 1
        return plan

    async def _out_of_stock(self, request: ReserveRequest) -> domain.StockguardError:
        levels = {level.sku: level for level in await self.stock(request.skus)}
        return domain.refusal(levels, request.lines)

    # ------------------------------------------------------------------ sharding

    async def shard(self, skus: Sequence[str]) -> None:
        """Gives every existing SKU of ``skus`` its buckets, once (any process may do it)."""
        missing = [sku for sku in skus if sku not in self._bucket_counts]
        if not missing:
            return

        async def work() -> dict[str, int]:
            async with self.store.transaction() as tx:
                now_ms = await tx.now_ms()
                rows = await tx.levels(missing, lock=True)
                counts = await b.bucket_counts(tx, list(rows))
                for sku, level in rows.items():
                    if sku in counts:
                        continue
                    if level.located:  # stocked elsewhere too: no buckets (docs/locations.md)
                        counts[sku] = 0
                        continue
                    empty = [Bucket(sku, n, 0, 0) for n in range(self.buckets_for(sku))]
                    # Safety stock stays on the row, never spread into the buckets holds
                    # take from (docs/design.md#safety-stock).
                    spread = max(level.available, 0)
                    await b.insert_buckets(tx, b.spread(empty, spread))
                    await tx.write_on_hand(sku, level.on_hand - spread, now_ms)
                    counts[sku] = len(empty)
                await tx.commit()
                return counts

        self._bucket_counts.update(await self.store.run(work))

    async def rebalance(self, sku: str, buckets: int | None = None) -> Level:
        """Evens out the SKU's buckets; with ``buckets`` larger than now, adds buckets."""
        domain.validate_sku(sku)
        if buckets is not None and not 1 <= buckets <= BUCKETS_MAX:
            raise domain.InvalidInput("buckets", f"must be 1-{BUCKETS_MAX}")
        await self.shard([sku])
        level = await self.writes.set(
            sku, lambda current: current.on_hand, None, "", grow_to=buckets
        )
        self.counters["sharded_rebalances"] += 1
        return level

    # ------------------------------------------------------------------ stock and admin

    async def stock(self, skus: Sequence[str]) -> list[Level]:
        async with self.store.transaction(read_only=True) as tx:
            levels = await b.totals(tx, skus)
            if any(level.located for level in levels.values()):
                levels |= await shown_levels(
                    tx, [sku for sku, level in levels.items() if level.located]
                )
        return [
            level if level.locations else located.totals(level, {}, {})
            for sku, level in sorted(levels.items())
        ]

    async def confirm(self, reservation_id: str) -> domain.Reservation:
        return await self.writes.confirm(reservation_id)

    async def release(self, reservation_id: str) -> domain.Reservation:
        return await self.writes.release(reservation_id)

    async def extend(self, reservation_id: str, ttl_s: int) -> domain.Reservation:
        return await self.writes.extend(reservation_id, ttl_s)

    async def release_part(self, reservation_id: str, lines: Sequence[Line]) -> domain.Reservation:
        return await self.writes.release_part(reservation_id, lines)

    async def expire_due(self) -> int:
        return await self.writes.expire_due()

    async def set_on_hand(self, sku: str, on_hand: int, expected_on_hand: int | None) -> Level:
        if await self._is_located(sku):
            return await self.store.set_on_hand(sku, on_hand, expected_on_hand)
        return await self.writes.set(sku, lambda _: on_hand, expected_on_hand, "set", create=True)

    async def _is_located(self, sku: str) -> bool:
        """Stocked elsewhere too, hence without buckets: its admin edits are the store's."""
        if self._bucket_counts.get(sku) == 0:
            return True
        async with self.store.transaction(read_only=True) as tx:
            level = (await tx.levels([sku])).get(sku)
        if level is not None and level.located:
            self._bucket_counts[sku] = 0
            return True
        return False

    async def set_policy(
        self, sku: str, policy: domain.Policy, expected: domain.Policy | None
    ) -> domain.Policy:
        """The policy and the re-spread it calls for, in one transaction: more safety
        stock moves units from the buckets back onto the row before any hold can take
        them (``ShardedWrites.set``, which locks every bucket and the row)."""
        await self.shard([sku])
        if await self._is_located(sku):
            return await self.store.set_policy(sku, policy, expected)
        await self.writes.set(
            sku, lambda current: current.on_hand, None, "", policy=(policy, expected)
        )
        return policy

    async def adjust(self, sku: str, delta: int, reason: str) -> Level:
        if await self._is_located(sku):
            return await self.store.adjust(sku, delta, reason)
        return await self.writes.set(sku, lambda current: current.on_hand + delta, None, reason)

    async def set_location_stock(
        self,
        sku: str,
        location: str,
        on_hand: int,
        expected_on_hand: int | None = None,
        safety_stock: int | None = None,
        backorder_max: int | None = None,
    ) -> Level:
        """A SKU's stock at one location (``StoreOperations.set_location_stock``). The first
        time a sharded SKU is stocked elsewhere, its buckets are folded back into its row
        in the same transaction: every held unit of a bucket moves onto the row with the
        record of it (a line without bucket records is held on the row), so nothing held
        changes, and from then on the SKU is decided by the allocation policy on its
        locked levels (docs/locations.md#how-each-strategy-uses-it)."""
        if location == domain.DEFAULT_LOCATION_CODE and not await self._is_located(sku):
            if safety_stock is not None or backorder_max is not None:
                await self.shard([sku])
                current = await self.get_policy(sku)
                await self.set_policy(
                    sku,
                    domain.Policy(
                        current.safety_stock if safety_stock is None else safety_stock,
                        current.backorder_max if backorder_max is None else backorder_max,
                        current.customer_max,
                        current.low_stock_threshold,
                    ),
                    None,
                )
            return await self.set_on_hand(sku, on_hand, expected_on_hand)

        async def fold(tx: StoreTx, now_ms: int) -> None:
            assert isinstance(tx, Tx)
            await b.fold(tx, sku, now_ms)  # buckets first, then the row: every writer's order

        level = await self.store.set_location_stock(
            sku, location, on_hand, expected_on_hand, safety_stock, backorder_max, first=fold
        )
        if level.located:
            self._bucket_counts[sku] = 0
        return level

    async def create_product(self, spec: ProductSpec) -> Product:
        product = await self.store.create_product(spec)
        await self.shard([variant.sku for variant in spec.variants])
        return product
