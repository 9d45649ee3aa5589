"""The sharded strategy's writes besides reserve: confirm, release, expiry and admin edits.

Each gives units back to (or takes them from) exactly the buckets recorded for the held
line in ``reservation_buckets``; a line with no such record was held on the SKU's
``stock_levels`` row (before the SKU was sharded) and is settled there. Lock order:
reservation rows, then buckets in (sku, bucket) order, then ``stock_levels`` rows: the
order a reservation takes them in (its buckets, then, on MariaDB, a shared lock on each
row from the foreign key check of its lines). Before it was kept everywhere, confirms
that locked the row first deadlocked with reservations on MariaDB (the bench's mixed
workload: a few requests a run ran out of retries).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from stockguard import domain
from stockguard.domain import Line, Movement, Reservation, Status, StockLevel
from stockguard.stores import located
from stockguard.stores.contract import StoreTx
from stockguard.stores.operations import extend_once, given_back, release_part_once
from stockguard.stores.sql import buckets as b
from stockguard.stores.sql.buckets import Bucket
from stockguard.stores.sql.store import EXPIRE_BATCH_MAX, DuplicateKey, SqlStore
from stockguard.stores.sql.tx import Tx


class ShardedWrites:
    """The writes of a sharded SKU besides reserve; the strategy holds one (composition:
    every dependency is passed in, none is assumed from a class it is mixed into)."""

    def __init__(
        self, store: SqlStore, bucket_counts: dict[str, int], buckets_for: Callable[[str], int]
    ) -> None:
        self.store = store
        self.bucket_counts = bucket_counts
        """Shared with the strategy: SKUs known to be sharded, with their bucket count."""
        self.buckets_for = buckets_for
        """How many buckets a SKU sharded from now on gets."""

    # ------------------------------------------------------------------ transitions

    async def confirm(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.CONFIRMED)

    async def release(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.RELEASED)

    async def _end(self, reservation_id: str, target: Status) -> Reservation:
        async def work() -> Reservation:
            async with self.store.transaction() as tx:
                now_ms = await tx.now_ms()
                found = await tx.reservation(reservation_id, lock=True)
                if found is None:
                    raise domain.ReservationNotFound(reservation_id)
                ending = domain.ending(found, target, now_ms)  # docs/design.md#one-clock
                if ending.writes is not None:
                    await self._end_held(tx, found, ending.writes, now_ms)
                    await tx.commit()
                return ending.result()

        return await self.store.run(work)

    async def extend(self, reservation_id: str, ttl_s: int) -> Reservation:
        """The shared extend; a hold found past its expiry gives its units back to its
        buckets."""
        return await self.store.run(
            lambda: extend_once(self.store, reservation_id, ttl_s, self._end_any)
        )

    async def release_part(self, reservation_id: str, lines: Sequence[Line]) -> Reservation:
        """The shared partial release, giving the units back to the buckets they were
        taken from (``buckets.take_back`` says which)."""
        return await self.store.run(
            lambda: release_part_once(
                self.store, reservation_id, lines, self._end_any, self._give_back_part
            )
        )

    async def _end_any(self, tx: StoreTx, held: Reservation, target: Status, now_ms: int) -> None:
        assert isinstance(tx, Tx)
        await self._end_held(tx, held, target, now_ms)

    async def _give_back_part(
        self, tx: StoreTx, held: Reservation, given: Sequence[Line], now_ms: int
    ) -> None:
        """Units of ``held`` back to the buckets its lines took them from (the last
        recorded bucket first), whatever was held on the SKU's row (before it was
        sharded) after that; the lock order is the other writers': buckets, then rows."""
        assert isinstance(tx, Tx)
        parts = await b.parts_of(tx, [held.id])
        to_buckets: dict[tuple[str, int], tuple[int, int]] = {}
        to_rows: dict[str, int] = {}
        shrunk: list[b.Part] = []
        # A located line (no buckets) gives back per allocation (docs/locations.md#settling).
        allocated = {line.sku for line in held.lines if line.allocations}
        at_default, elsewhere = given_back(held, [line for line in given if line.sku in allocated])
        for sku, change in at_default.items():
            to_rows[sku] = change[1]
        for line in given:
            if line.sku in allocated:
                continue
            on_buckets = [p for p in parts if p.sku == line.sku]
            plan = b.take_back(on_buckets, line.quantity)
            for part, units in plan:
                to_buckets[(part.sku, part.bucket)] = (0, -units)
                shrunk.append(dataclasses.replace(part, quantity=part.quantity - units))
            rest = line.quantity - sum(units for _, units in plan)
            if rest:
                to_rows[line.sku] = -rest
        await tx.shrink_lines(held, given, now_ms)
        await b.shrink_parts(tx, shrunk)
        await b.add(tx, to_buckets)
        if to_rows:
            await tx.levels(list(to_rows), lock=True)
            await tx.add_reserved(to_rows, now_ms)
        await self._give_back_elsewhere(tx, elsewhere, now_ms)

    async def _end_held(self, tx: Tx, held: Reservation, target: Status, now_ms: int) -> None:
        ended = await tx.end_reservations([held.id], target, now_ms)
        assert ended == 1, "the row was locked as held"
        sold = target is Status.CONFIRMED
        # Units held at the default location (its buckets and row) and elsewhere, for a
        # SKU stocked at several locations (docs/locations.md#settling).
        at_default, elsewhere = located.settled((line, sold) for line in held.lines)
        quantities = {sku: -change[1] for sku, change in at_default.items()}
        await self._give_back(tx, [held.id], quantities, now_ms, sold=sold)
        await self._give_back_elsewhere(tx, elsewhere, now_ms)
        if sold:
            after = await b.totals(tx, list(quantities))
            movements = [
                Movement(now_ms, sku, -quantity, after[sku].on_hand, "sale", held.id)
                for sku, quantity in sorted(quantities.items())
            ]
            if elsewhere:
                levels = await tx.location_levels(sorted({sku for sku, _ in elsewhere}))
                movements += [
                    Movement(
                        now_ms, sku, change[0], levels[sku][code].on_hand, "sale", held.id, code
                    )
                    for (sku, code), change in sorted(elsewhere.items())
                ]
            await tx.record_movements(movements)

    async def _give_back_elsewhere(
        self, tx: Tx, elsewhere: located.LocationDeltas, now_ms: int
    ) -> None:
        """Units held at locations other than the default one: their SKU rows are locked
        (after any bucket), then those levels, then moved."""
        if not elsewhere:
            return
        skus = sorted({sku for sku, _ in elsewhere})
        await b.lock_levels(tx, skus)
        await tx.location_levels(skus, lock=True)
        await tx.move_location_levels(elsewhere, now_ms)

    async def _give_back(
        self,
        tx: Tx,
        ids: Sequence[str],
        quantities: Mapping[str, int],
        now_ms: int,
        *,
        sold: bool,
    ) -> None:
        """Takes the held units of ``ids`` out of ``reserved`` (and, when sold, on_hand)."""
        on_buckets: defaultdict[tuple[str, int], int] = defaultdict(int)
        from_buckets: defaultdict[str, int] = defaultdict(int)
        for part in await b.parts_of(tx, ids):
            on_buckets[(part.sku, part.bucket)] += part.quantity
            from_buckets[part.sku] += part.quantity
        on_rows = {sku: q - from_buckets[sku] for sku, q in quantities.items()}
        if sold:
            # Buckets before rows, like every writer here: a reservation holds its bucket
            # and then takes a shared lock on the row (MariaDB's foreign key check on its
            # lines), so a confirm holding the row while it waits for that bucket deadlocks.
            await b.add(tx, {key: (-q, -q) for key, q in on_buckets.items()})
            await b.lock_levels(tx, list(quantities))  # the ledger sees one on_hand at a time
            await tx.move_levels({sku: (-q, -q) for sku, q in on_rows.items() if q}, now_ms)
        else:
            await b.add(tx, {key: (0, -q) for key, q in on_buckets.items()})
            await tx.add_reserved({sku: -q for sku, q in on_rows.items() if q}, now_ms)

    async def expire_due(self) -> int:
        """Ends held reservations past expiry, a batch per transaction, sums per bucket."""
        total = 0
        while True:

            async def batch() -> int:
                async with self.store.transaction() as tx:
                    now_ms = await tx.now_ms()
                    ids = await tx.due_reservation_ids(now_ms, EXPIRE_BATCH_MAX)
                    if not ids:
                        return 0
                    quantities = await tx.held_quantity_by_sku(ids)
                    elsewhere = await tx.held_elsewhere(ids)
                    ended = await tx.end_reservations(ids, Status.EXPIRED, now_ms)
                    assert ended == len(ids), "due rows were locked as held"
                    await self._give_back(tx, ids, quantities, now_ms, sold=False)
                    await self._give_back_elsewhere(
                        tx, {key: (0, -q) for key, q in elsewhere.items()}, now_ms
                    )
                    await tx.commit()
                    return ended

            ended = await self.store.run(batch)
            total += ended
            if ended < EXPIRE_BATCH_MAX:
                return total

    # ------------------------------------------------------------------ admin edits

    async def set(
        self,
        sku: str,
        on_hand_of: Callable[[StockLevel], int],
        expected_on_hand: int | None,
        reason: str,
        *,
        create: bool = False,
        grow_to: int | None = None,
        policy: tuple[domain.Policy, domain.Policy | None] | None = None,
    ) -> StockLevel:
        """Sets a SKU's whole on_hand and spreads it evenly over its buckets.

        Locks the SKU's row and every bucket, so it also is the rebalancing step: after it
        every bucket has the same available (give or take one unit). The row keeps its
        own holds' units plus the safety stock (as much of it as is not reserved in the
        buckets); ``policy`` (new, expected) is written first, on the same locked row.
        """

        async def work() -> tuple[StockLevel, int]:
            async with self.store.transaction() as tx:
                now_ms = await tx.now_ms()
                rows = (await b.buckets(tx, [sku], lock=True)).get(sku, [])  # buckets first
                row = (await tx.levels([sku], lock=True)).get(sku)
                if row is not None and policy is not None:
                    current_policy = await tx.policy(sku)
                    assert current_policy is not None
                    domain.check_policy_change(sku, current_policy, policy[1])
                    totals = (await b.totals(tx, [sku]))[sku]
                    domain.check_backorder_cut(totals, policy[0])
                    await tx.write_policy(sku, policy[0], now_ms)
                    row = dataclasses.replace(
                        row,
                        safety_stock=policy[0].safety_stock,
                        backorder_max=policy[0].backorder_max,
                    )
                if row is None:
                    if not create or expected_on_hand is not None:
                        raise domain.UnknownSku([sku])
                    on_hand = on_hand_of(StockLevel(sku, 0, 0, 0))
                    count = self.buckets_for(sku)
                    await tx.insert_levels({sku: 0}, now_ms)
                    empty = [Bucket(sku, n, 0, 0) for n in range(count)]
                    await b.insert_buckets(tx, b.spread(empty, on_hand))
                    await tx.record_movements(
                        [Movement(now_ms, sku, on_hand, on_hand, "created", None)]
                    )
                else:
                    count = max(len(rows) or self.buckets_for(sku), grow_to or 0)
                    added = [Bucket(sku, n, 0, 0) for n in range(len(rows), count)]
                    await b.insert_buckets(tx, added)
                    rows = rows + added
                    current = dataclasses.replace(
                        row,
                        on_hand=row.on_hand + sum(r.on_hand for r in rows),
                        reserved=row.reserved + sum(r.reserved for r in rows),
                    )
                    on_hand = on_hand_of(current)
                    domain.check_on_hand_change(current, on_hand, expected_on_hand)
                    # The row keeps what its own (pre-sharding) holds need and the safety
                    # stock; buckets get the rest.
                    loose = on_hand - row.reserved - sum(r.reserved for r in rows)
                    keep = row.reserved + min(row.safety_stock, loose)
                    await b.write(tx, b.spread(rows, on_hand - keep))
                    if row.on_hand != keep:
                        await tx.write_on_hand(sku, keep, now_ms)
                    if on_hand != current.on_hand:
                        await tx.record_movements(
                            [
                                Movement(
                                    now_ms, sku, on_hand - current.on_hand, on_hand, reason, None
                                )
                            ]
                        )
                after = (await b.totals(tx, [sku]))[sku]
                await tx.commit()
                return after, count

        try:
            level, count = await self.store.run(work)
        except DuplicateKey:  # created concurrently by another admin: now it exists
            level, count = await self.store.run(work)
        self.bucket_counts[sku] = count
        return level
