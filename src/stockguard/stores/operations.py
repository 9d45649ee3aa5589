"""The use cases every store shares, written against the transaction API alone.

Strategies differ only in how they serialise *holding* stock. Confirm, release, expiry and
admin edits are relative updates on rows the transaction has locked (or, on SQLite, on a
database it has locked), so they are correct under any reservation strategy and live here,
once for every store (``SqlStore``, ``MemoryStore``): each store brings its session (how a
transaction is opened, retried and classified) and its read queries for listings.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from stockguard import domain
from stockguard.domain import (
    Line,
    Movement,
    Product,
    ProductSpec,
    Reservation,
    Status,
    StockLevel,
    Variant,
)
from stockguard.domain.locations import (
    ALLOCATION_POLICY_DEFAULT,
    LOCATIONS_MAX,
    AllocationPolicy,
    Location,
    LocationLevel,
    validate_location,
)
from stockguard.stores import located
from stockguard.stores.contract import DuplicateKey, StoreTx

T = TypeVar("T")
EndHeld = Callable[[StoreTx, Reservation, Status, int], Awaitable[None]]
"""Ends one held reservation whose row the transaction locked (status, stock, ledger)."""
GiveBack = Callable[[StoreTx, Reservation, Sequence[Line], int], Awaitable[None]]
"""Gives back some units of a held reservation whose row the transaction locked."""

EXPIRE_BATCH_MAX = 1_000
SEQ_MAX = 2**63 - 1
"""The largest ``seq`` a BIGINT holds: a cursor past it names no row and no database
takes it as a parameter (asyncpg: DataError; SQLite: OverflowError)."""
FILTER_TEXT_LEN_MAX = max(domain.PRODUCT_NAME_LEN_MAX, domain.ORDER_ID_LEN_MAX)
_CURSOR = re.compile(r"[0-9]{1,19}")


class StoreOperations:
    """The shared use cases; a store subclasses this and provides the session below."""

    counters: Counter[str]
    allocation_policy: AllocationPolicy = ALLOCATION_POLICY_DEFAULT
    """The shop's default allocation policy (``STOCKGUARD_ALLOCATION_POLICY``): how a line
    of a SKU stocked at several locations draws when its request names none."""

    def transaction(self, *, read_only: bool = False) -> AbstractAsyncContextManager[StoreTx]:
        """A transaction that rolls back unless the body calls ``tx.commit()``."""
        raise NotImplementedError

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Runs ``work`` again when the store rolled it back to break a deadlock."""
        raise NotImplementedError

    def new_id(self) -> str:
        """A new reservation or product id (``domain.new_reservation`` takes it)."""
        return str(uuid.uuid4())

    async def replay(
        self, tx: StoreTx, request: domain.ReserveRequest
    ) -> domain.ReserveOutcome | None:
        """The earlier answer for this order_id, if any (idempotency)."""
        earlier = await tx.reservation_by_order(request.order_id)
        if earlier is None:
            return None
        answer = domain.replay_or_conflict(earlier, request)
        if isinstance(answer, domain.IdempotencyConflict):
            raise answer
        return answer

    async def replay_after_duplicate(self, request: domain.ReserveRequest) -> domain.ReserveOutcome:
        """Another request with the same order_id committed first: answer as its replay."""
        async with self.transaction(read_only=True) as tx:
            outcome = await self.replay(tx, request)
        assert outcome is not None, "a duplicate order_id must be readable after it committed"
        return outcome

    async def out_of_stock(self, request: domain.ReserveRequest) -> domain.StockguardError:
        """The error for a refused request, with every line's shortfall as of now."""
        async with self.transaction(read_only=True) as tx:
            levels = await shown_levels(tx, request.skus)
        return domain.refusal(levels, request.lines)

    async def confirm(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.CONFIRMED)

    async def release(self, reservation_id: str) -> Reservation:
        return await self._end(reservation_id, Status.RELEASED)

    async def _end(self, reservation_id: str, target: Status) -> Reservation:
        async def work() -> Reservation:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                found = await tx.reservation(reservation_id, lock=True)
                if found is None:
                    raise domain.ReservationNotFound(reservation_id)
                ending = domain.ending(found, target, now_ms)  # docs/design.md#one-clock
                if ending.writes is not None:
                    await self._end_held(tx, [found], ending.writes, now_ms)
                    await tx.commit()
                return ending.result()

        return await self.run(work)

    async def extend(self, reservation_id: str, ttl_s: int) -> Reservation:
        """Moves a held reservation's expiry later (``domain.extension``)."""
        return await self.run(lambda: extend_once(self, reservation_id, ttl_s, self._end_one))

    async def release_part(self, reservation_id: str, lines: Sequence[Line]) -> Reservation:
        """Gives back ``lines`` of a held reservation (``domain.release_part``)."""
        return await self.run(
            lambda: release_part_once(self, reservation_id, lines, self._end_one, give_back_lines)
        )

    async def _end_one(self, tx: StoreTx, held: Reservation, target: Status, now_ms: int) -> None:
        await self._end_held(tx, [held], target, now_ms)

    async def _end_held(
        self, tx: StoreTx, held: Sequence[Reservation], target: Status, now_ms: int
    ) -> None:
        ended = await tx.end_reservations([r.id for r in held], target, now_ms)
        assert ended == len(held), "the rows were locked as held"
        if target is Status.CONFIRMED:
            for reservation in held:
                await tx.sell(reservation.lines, reservation.id, now_ms)
        else:
            at_default, elsewhere = located.settled(
                (line, False) for reservation in held for line in reservation.lines
            )
            await tx.add_reserved({sku: change[1] for sku, change in at_default.items()}, now_ms)
            if elsewhere:
                await tx.move_location_levels(elsewhere, now_ms)

    async def expire_due(self, limit: int = EXPIRE_BATCH_MAX) -> int:
        """Ends every held reservation past its expiry, in batches of ``limit``.

        Each batch: lock due rows (skipping those another sweeper or a confirm holds),
        mark them expired, then lock their stock rows and lower ``reserved`` by the
        aggregated amounts in one statement.
        """
        assert 1 <= limit <= EXPIRE_BATCH_MAX
        total = 0
        while True:

            async def batch() -> int:
                async with self.transaction() as tx:
                    now_ms = await tx.now_ms()
                    ids = await tx.due_reservation_ids(now_ms, limit)
                    if not ids:
                        return 0
                    totals = await tx.held_quantity_by_sku(ids)
                    elsewhere = await tx.held_elsewhere(ids)
                    ended = await tx.end_reservations(ids, Status.EXPIRED, now_ms)
                    assert ended == len(ids), "due rows were locked as held"
                    # Lock the stock rows in SKU order in one statement, then move them all
                    # in one more: the hot rows wait on no round trip per SKU in between.
                    rows = sorted(set(totals).union(sku for sku, _ in elsewhere))
                    await tx.levels(rows, lock=True)
                    await tx.move_levels({sku: (0, -q) for sku, q in totals.items()}, now_ms)
                    if elsewhere:  # levels at other locations, after the rows (docs/locations.md)
                        await tx.location_levels(sorted({sku for sku, _ in elsewhere}), lock=True)
                        await tx.move_location_levels(
                            {key: (0, -q) for key, q in elsewhere.items()}, now_ms
                        )
                    await tx.commit()
                    return ended

            ended = await self.run(batch)
            total += ended
            if ended < limit:
                return total

    async def get_reservation(self, reservation_id: str) -> Reservation:
        async with self.transaction(read_only=True) as tx:
            found = await tx.reservation(reservation_id)
        if found is None:
            raise domain.ReservationNotFound(reservation_id)
        return found

    async def stock(self, skus: Sequence[str]) -> list[StockLevel]:
        """The SKUs' levels as shown: totals over their active locations, with the level
        at every location (docs/locations.md#totals)."""
        async with self.transaction(read_only=True) as tx:
            levels = await shown_levels(tx, skus)
        return [levels[sku] for sku in sorted(levels)]

    async def set_on_hand(
        self, sku: str, on_hand: int, expected_on_hand: int | None = None
    ) -> StockLevel:
        """Compare-and-set (docs/design.md#seed-001); creates the SKU if absent and not expected."""

        async def work() -> StockLevel:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                current = (await tx.levels([sku], lock=True)).get(sku)
                if current is None:
                    if expected_on_hand is not None:
                        raise domain.UnknownSku([sku])
                    await tx.insert_levels({sku: on_hand}, now_ms)
                    await tx.record_movements(
                        [Movement(now_ms, sku, on_hand, on_hand, "created", None)]
                    )
                else:
                    domain.check_on_hand_change(current, on_hand, expected_on_hand)
                    if on_hand == current.on_hand:
                        return (await shown_levels(tx, [sku]))[sku]
                    await tx.write_on_hand(sku, on_hand, now_ms)
                    await tx.record_movements(
                        [Movement(now_ms, sku, on_hand - current.on_hand, on_hand, "set", None)]
                    )
                after = (await shown_levels(tx, [sku]))[sku]
                await tx.commit()
                return after

        try:
            return await self.run(work)
        except DuplicateKey:  # created concurrently by another admin: now it exists
            return await self.run(work)

    async def adjust(self, sku: str, delta: int, reason: str) -> StockLevel:
        async def work() -> StockLevel:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                current = (await tx.levels([sku], lock=True)).get(sku)
                if current is None:
                    raise domain.UnknownSku([sku])
                on_hand = current.on_hand + delta
                domain.check_on_hand_change(current, on_hand, None)
                await tx.write_on_hand(sku, on_hand, now_ms)
                await tx.record_movements([Movement(now_ms, sku, delta, on_hand, reason, None)])
                after = (await shown_levels(tx, [sku]))[sku]
                await tx.commit()
                return after

        return await self.run(work)

    async def get_policy(self, sku: str) -> domain.Policy:
        async with self.transaction(read_only=True) as tx:
            found = await tx.policy(sku)
        if found is None:
            raise domain.UnknownSku([sku])
        return found

    async def set_policy(
        self, sku: str, policy: domain.Policy, expected: domain.Policy | None = None
    ) -> domain.Policy:
        """Compare-and-set of the whole policy on the locked stock row: every hold of the
        SKU locks (or version-checks) that row, so none is decided half on the old policy
        and half on the new one."""
        domain.validate_policy(policy)

        async def work() -> domain.Policy:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                current = await tx.policy(sku, lock=True)
                if current is None:
                    raise domain.UnknownSku([sku])
                domain.check_policy_change(sku, current, expected)
                if policy.backorder_max < current.backorder_max:
                    level = (await tx.levels([sku]))[sku]  # locked with the policy
                    domain.check_backorder_cut(level, policy)
                if policy != current:
                    await tx.write_policy(sku, policy, now_ms)
                    await tx.commit()
                return policy

        return await self.run(work)

    # ------------------------------------------------------------------ locations

    async def list_locations(self) -> list[Location]:
        """Every location in priority order (docs/locations.md), ``default`` included."""
        async with self.transaction(read_only=True) as tx:
            return list((await tx.locations()).values())

    async def create_location(self, location: Location) -> Location:
        checked = validate_location(
            location.code, location.name, location.priority, location.active
        )

        async def work() -> Location:
            async with self.transaction() as tx:
                existing = await tx.locations()
                if checked.code in existing:
                    raise domain.DuplicateLocation(checked.code)
                if len(existing) >= LOCATIONS_MAX:
                    raise domain.InvalidInput(
                        "code", f"a shop has at most {LOCATIONS_MAX} locations"
                    )
                await tx.insert_location(checked, await tx.now_ms())
                await tx.commit()
                return checked

        try:
            return await self.run(work)
        except DuplicateKey:  # created concurrently by another admin
            raise domain.DuplicateLocation(checked.code) from None

    async def update_location(
        self,
        code: str,
        *,
        name: str | None = None,
        priority: int | None = None,
        active: bool | None = None,
    ) -> Location:
        """A location's name, priority or active flag. Deactivating stops its selling at
        once and keeps its holds (docs/locations.md#deactivating). The default location
        cannot be deactivated: it is where every SKU of a shop without locations sells
        from, and its level is the SKU's own row, which the fast paths read alone."""

        async def work() -> Location:
            async with self.transaction() as tx:
                current = (await tx.locations()).get(code)
                if current is None:
                    raise domain.UnknownLocation(code)
                changed = validate_location(
                    code,
                    current.name if name is None else name,
                    current.priority if priority is None else priority,
                    current.active if active is None else active,
                )
                if code == located.DEFAULT and not changed.active:
                    raise domain.InvalidInput(
                        "active", "the default location cannot be deactivated"
                    )
                if changed != current:
                    await tx.write_location(changed)
                    await tx.commit()
                return changed

        return await self.run(work)

    async def set_location_stock(
        self,
        sku: str,
        location: str,
        on_hand: int,
        expected_on_hand: int | None = None,
        safety_stock: int | None = None,
        backorder_max: int | None = None,
        *,
        first: Callable[[StoreTx, int], Awaitable[None]] | None = None,
    ) -> StockLevel:
        """A SKU's stock at one location: the compare-and-set of ``set_on_hand``
        (docs/design.md#seed-001) on that level, which is created (and the SKU too) when
        absent and not expected; ``safety_stock`` and ``backorder_max`` of that location
        when given (docs/locations.md#policy-per-location). Answers the SKU as shown
        (totals and every location)."""

        async def work() -> StockLevel:
            async with self.transaction() as tx:
                now_ms = await tx.now_ms()
                if location not in await tx.locations():
                    raise domain.UnknownLocation(location)
                if first is not None:  # a strategy's own step in the same transaction
                    await first(tx, now_ms)
                await set_level(
                    tx,
                    sku,
                    location,
                    on_hand,
                    expected_on_hand,
                    safety_stock,
                    backorder_max,
                    now_ms,
                )
                after = (await shown_levels(tx, [sku]))[sku]
                await tx.commit()
                return after

        try:
            return await self.run(work)
        except DuplicateKey:  # created concurrently by another admin: now it exists
            return await self.run(work)

    async def create_product(self, spec: ProductSpec) -> Product:
        product_id = self.new_id()
        skus = [v.sku for v in spec.variants]
        try:
            async with self.transaction() as tx:
                taken = await tx.existing_skus(skus)
                if taken:
                    raise domain.DuplicateSku(taken)
                now_ms = await tx.now_ms()
                await tx.insert_levels({v.sku: v.on_hand for v in spec.variants}, now_ms)
                await tx.record_movements(
                    [
                        Movement(now_ms, v.sku, v.on_hand, v.on_hand, "created", None)
                        for v in spec.variants
                    ]
                )
                await tx.insert_product(
                    product_id,
                    spec.name,
                    spec.options,
                    [(v.sku, v.options) for v in spec.variants],
                    now_ms,
                )
                await tx.commit()
        except DuplicateKey:
            raise domain.DuplicateSku(skus) from None
        return await self.get_product(product_id)

    async def get_product(self, product_id: str) -> Product:
        async with self.transaction(read_only=True) as tx:
            found = await tx.product_rows(product_id)
            if found is None:
                raise domain.ProductNotFound(product_id)
            name, options, variants = found
            levels = await shown_levels(tx, [sku for sku, _ in variants])
        return Product(
            product_id,
            name,
            options,
            tuple(Variant(sku, opts, levels[sku]) for sku, opts in variants),
        )


async def shown_levels(tx: StoreTx, skus: Sequence[str]) -> dict[str, StockLevel]:
    """The SKUs' levels as stock reads show them (``located.totals``): a SKU stocked only
    at the default location costs no more than its row."""
    levels = await tx.levels(skus)
    if not any(level.located for level in levels.values()):
        return {sku: located.totals(level, {}, {}) for sku, level in levels.items()}
    others = await tx.location_levels([sku for sku, lv in levels.items() if lv.located])
    places = await tx.locations()
    return {
        sku: located.totals(level, others.get(sku, {}), places) for sku, level in levels.items()
    }


async def set_level(
    tx: StoreTx,
    sku: str,
    location: str,
    on_hand: int,
    expected_on_hand: int | None,
    safety_stock: int | None,
    backorder_max: int | None,
    now_ms: int,
) -> None:
    """``set_location_stock``'s writes, on the SKU row then the level, locked in that order."""
    domain.validate_on_hand(on_hand)
    current = (await tx.levels([sku], lock=True)).get(sku)
    if current is None:
        if expected_on_hand is not None:
            raise domain.UnknownSku([sku])
        initial = on_hand if location == located.DEFAULT else 0
        await tx.insert_levels({sku: initial}, now_ms)
        await tx.record_movements([Movement(now_ms, sku, initial, initial, "created", None)])
        current = (await tx.levels([sku], lock=True))[sku]
    level: LocationLevel | None = located.default_level(current)
    if location != located.DEFAULT:
        level = (await tx.location_levels([sku], lock=True)).get(sku, {}).get(location)
    wanted_safety = level.safety_stock if level is not None else 0
    wanted_allowance = level.backorder_max if level is not None else 0
    wanted_safety = wanted_safety if safety_stock is None else safety_stock
    wanted_allowance = wanted_allowance if backorder_max is None else backorder_max
    domain.validate_policy(domain.Policy(wanted_safety, wanted_allowance, None, None))
    if level is None:  # a new level holds 0: an expected_on_hand other than 0 is refused
        await tx.insert_location_level(sku, location, 0, now_ms)
        level = (await tx.location_levels([sku], lock=True))[sku][location]
    as_row = StockLevel(
        sku, level.on_hand, level.reserved, level.version, wanted_safety, None, wanted_allowance
    )
    domain.check_on_hand_change(as_row, on_hand, expected_on_hand)
    if level.backorder_max > wanted_allowance:
        domain.check_backorder_cut(
            as_row, domain.Policy(wanted_safety, wanted_allowance, None, None)
        )
    if location == located.DEFAULT:
        if on_hand != current.on_hand:
            await tx.write_on_hand(sku, on_hand, now_ms)
        if (wanted_safety, wanted_allowance) != (current.safety_stock, current.backorder_max):
            policy = await tx.policy(sku)
            assert policy is not None, "the row is locked"
            await tx.write_policy(
                sku,
                domain.Policy(
                    wanted_safety, wanted_allowance, policy.customer_max, policy.low_stock_threshold
                ),
                now_ms,
            )
    else:
        await tx.write_location_level(
            LocationLevel(
                sku,
                location,
                on_hand,
                level.reserved,
                level.version,
                wanted_safety,
                wanted_allowance,
            ),
            now_ms,
        )
    if on_hand != level.on_hand:
        await tx.record_movements(
            [Movement(now_ms, sku, on_hand - level.on_hand, on_hand, "set", None, location)]
        )


async def extend_once(
    store: StoreOperations, reservation_id: str, ttl_s: int, end_held: EndHeld
) -> Reservation:
    """One transaction of an extend: lock the reservation row, THEN read the clock, so
    the expiry sweep (which skips or waits for a locked row, and re-checks that it is
    still due) and this extension cannot both win: either the sweep ended the hold
    first and this answers ``ReservationExpired``, or the new expiry is committed
    before the sweep can see the row (docs/design.md#extending-a-hold)."""
    async with store.transaction() as tx:
        found = await tx.reservation(reservation_id, lock=True)
        if found is None:
            raise domain.ReservationNotFound(reservation_id)
        now_ms = await tx.now_ms()
        decided = domain.extension(found, ttl_s, now_ms)
        if decided.expires:
            await end_held(tx, found, Status.EXPIRED, now_ms)
            await tx.commit()
        elif decided.expires_at_ms is not None:
            await tx.write_expiry(found.id, decided.expires_at_ms)
            await tx.commit()
        return decided.result()


async def release_part_once(
    store: StoreOperations,
    reservation_id: str,
    lines: Sequence[Line],
    end_held: EndHeld,
    give_back: GiveBack,
) -> Reservation:
    """One transaction of a partial release, on the locked reservation row: a confirm
    waits for it (or it for the confirm), so the confirm sells exactly what is left."""
    async with store.transaction() as tx:
        found = await tx.reservation(reservation_id, lock=True)
        if found is None:
            raise domain.ReservationNotFound(reservation_id)
        now_ms = await tx.now_ms()
        decided = domain.release_part(found, lines, now_ms)
        if decided.ends is not None:
            await end_held(tx, found, decided.ends, now_ms)
            await tx.commit()
        elif decided.given:
            await give_back(tx, found, decided.given, now_ms)
            await tx.commit()
        return decided.result()


async def give_back_lines(
    tx: StoreTx, held: Reservation, given: Sequence[Line], now_ms: int
) -> None:
    """A partial release on stock rows: the lines shrink, ``reserved`` drops by the
    units given back; ``on_hand`` and the ledger are untouched (nothing was sold)."""
    await tx.shrink_lines(held, given, now_ms)
    await tx.levels([line.sku for line in given], lock=True)  # SKU order, as every writer
    at_default, elsewhere = given_back(held, given)
    await tx.add_reserved({sku: change[1] for sku, change in at_default.items()}, now_ms)
    if elsewhere:
        await tx.location_levels(sorted({sku for sku, _ in elsewhere}), lock=True)
        await tx.move_location_levels(elsewhere, now_ms)


def given_back(
    held: Reservation, given: Sequence[Line]
) -> tuple[located.LevelDeltas, located.LocationDeltas]:
    """Per level, the units a partial release gives back: a line's allocations before
    less what ``remaining_lines`` leaves of them (docs/locations.md#settling)."""
    left = {line.sku: line for line in domain.remaining_lines(held.lines, given)}
    asked = {line.sku for line in given}
    before = [(line, False) for line in held.lines if line.sku in asked]
    after = [
        (left[line.sku], False) for line in held.lines if line.sku in asked and line.sku in left
    ]
    at_default, elsewhere = located.settled(before)
    back_default, back_elsewhere = located.settled(after)
    for sku, change in back_default.items():
        at_default[sku] = (0, at_default[sku][1] - change[1])
    for key, change in back_elsewhere.items():
        elsewhere[key] = (0, elsewhere[key][1] - change[1])
    return (
        {sku: c for sku, c in at_default.items() if c[1]},
        {key: c for key, c in elsewhere.items() if c[1]},
    )


async def customer_units(
    tx: StoreTx, levels: dict[str, StockLevel], requests: Sequence[domain.ReserveRequest]
) -> dict[tuple[str, str], int] | None:
    """The counts the requests' per-customer caps need, read on ``levels`` the caller
    locked; None (and no query) when none of their SKUs has a cap."""
    if not any(level.customer_max is not None for level in levels.values()):
        return None
    return await tx.customer_units(domain.capped_pairs(levels, requests))


def check_customer(
    levels: dict[str, StockLevel],
    units: dict[tuple[str, str], int] | None,
    request: domain.ReserveRequest,
) -> None:
    """Raises the cap's refusal of ``request`` (``domain.customer_refusal``), if any."""
    if units is not None:
        refused = domain.customer_refusal(levels, units, request)
        if refused is not None:
            raise refused


def parse_cursor(cursor: str | None) -> int | None:
    """A page cursor: the ``seq`` of a row, as ASCII digits (``str.isdigit`` also takes
    "²", which ``int`` refuses), no larger than the signed 64-bit column can hold."""
    if cursor is None:
        return None
    if _CURSOR.fullmatch(cursor) is None or int(cursor) > SEQ_MAX:
        raise domain.InvalidInput("cursor", "is not a cursor this service returned")
    return int(cursor)


def filter_text(value: str | None, field_name: str) -> str | None:
    """A text filter, refused when it holds what no stored value can (control characters:
    PostgreSQL refuses NUL outright) or is longer than any stored value."""
    if not value:
        return value  # None: no filter; "": matches nothing, as before
    return domain.validate_filter_text(value, field_name, FILTER_TEXT_LEN_MAX)
