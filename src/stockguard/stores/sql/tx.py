"""The statements a transaction can run: one method per statement, no decisions.

Strategies and the store compose these inside ``SqlStore.transaction()``; the rules that
decide *what* to write live in ``stockguard.domain``. Rows are always touched in sorted
SKU order so that two transactions never wait on each other in a cycle.

Over 350 lines on purpose: this is the whole transaction API a strategy sees (the
``stores.contract.StoreTx`` protocol, which ``stores/memory.py`` implements too), one
method per statement. A backend that can do a batch in fewer statements overrides methods
in its own file (``postgres.PostgresTx``); ``Backend.tx`` picks the class.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import ColumnElement, Row, and_, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stockguard import domain
from stockguard.domain import Allocation, Line, Movement, Reservation, Status, StockLevel
from stockguard.domain.events import Event, EventRecorder, LevelAfter
from stockguard.domain.locations import Location, LocationLevel
from stockguard.stores.contract import RetryableConflict
from stockguard.stores.sql import schema as t

if TYPE_CHECKING:
    from stockguard.stores.sql.backend import Backend

IN_CLAUSE_MAX = 500
"""Rows named in one ``IN (…)``; longer lists are split so no statement grows unbounded."""


_MOVE_LEVEL = text(
    "UPDATE stock_levels SET on_hand = on_hand + :on_hand, reserved = reserved + :reserved, "
    "version = version + 1, updated_at_ms = :now_ms WHERE sku = :sku"
)


_MOVE_LOCATION_LEVEL = text(
    "UPDATE location_levels SET on_hand = on_hand + :on_hand, reserved = reserved + :reserved, "
    "version = version + 1, updated_at_ms = :now_ms WHERE sku = :sku AND location = :location"
)


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), IN_CLAUSE_MAX):
        yield items[start : start + IN_CLAUSE_MAX]


class Tx:
    """One open transaction. Rolled back by ``SqlStore.transaction`` unless committed."""

    def __init__(self, connection: AsyncConnection, backend: Backend) -> None:
        self.connection = connection
        self.backend = backend
        self.committed = False
        self.recorder: EventRecorder | None = None
        """Set by the store when events are on: the writes below tell it what changed, and
        ``commit`` inserts the events in this transaction (docs/events.md#the-outbox)."""
        self.sharded = False
        """Set by ``buckets``: a SKU's levels are its row plus its buckets."""
        self.named_locks = 0
        """MariaDB GET_LOCKs taken for events (``lock_for_events``), released after commit."""

    async def commit(self) -> None:
        if self.recorder is not None and self.recorder.pending:
            await self.write_events(self.recorder)
        await self.connection.commit()
        self.committed = True
        await self.release_named_locks()

    async def write_events(self, recorder: EventRecorder) -> None:
        """The outbox rows of this transaction, from the levels as its writes left them
        (the rows are locked by those writes, so nobody else moved them since)."""
        missing = recorder.unknown_lines()
        if missing:
            recorder.learn_lines(await self.lines_of(missing))
        events = recorder.build(await self.levels_after(recorder.skus()), recorder.at_ms)
        await self.insert_events(events)

    async def levels_after(self, skus: Sequence[str]) -> dict[str, LevelAfter]:
        if self.sharded:
            # Sharded holds lock a bucket row, not the SKU's row, so two of them commit side
            # by side and each would judge sold out / back in stock without the other. Lock
            # the SKU rows here, just before commit: every transaction that records events
            # for a SKU then reads its levels in commit order (READ COMMITTED and SQLite's
            # single writer read the latest), and "before" = "after" - its own change holds.
            await self.lock_for_events(skus)
        c = t.stock_levels.c
        found: dict[str, LevelAfter] = {}
        located: list[str] = []
        for chunk in _chunks(sorted(set(skus))):
            rows = await self.connection.execute(
                select(c.sku, c.on_hand, c.reserved, c.low_stock_threshold, c.located).where(
                    c.sku.in_(chunk)
                )
            )
            for row in rows:
                found[row.sku] = LevelAfter(row.on_hand, row.reserved, row.low_stock_threshold)
                if row.located:
                    located.append(row.sku)
        if located:
            # A SKU stocked at several locations is judged on its totals over the active
            # ones (docs/locations.md#totals), as stock reads show it.
            active = {code for code, place in (await self.locations()).items() if place.active}
            for sku, by_code in (await self.location_levels(located)).items():
                extra = [level for code, level in by_code.items() if code in active]
                at_default = found[sku]
                found[sku] = LevelAfter(
                    at_default.on_hand + sum(level.on_hand for level in extra),
                    at_default.reserved + sum(level.reserved for level in extra),
                    at_default.low_stock_threshold,
                )
        if self.sharded and found:
            from stockguard.stores.sql.buckets import totals  # buckets imports this module

            plain = [sku for sku in found if sku not in located]  # located: no buckets
            for sku, level in (await totals(self, plain)).items():
                found[sku] = LevelAfter(
                    level.on_hand, level.reserved, found[sku].low_stock_threshold
                )
        return found

    async def lock_for_events(self, skus: Sequence[str]) -> None:
        """Serialises the commits of sharded transactions per SKU (see ``levels_after``).

        PostgreSQL: a write of the SKU rows (as ``buckets.lock_levels``), which takes FOR NO
        KEY UPDATE: the key-share locks of other holds' line inserts do not block it.
        MariaDB: a write there would wait on the shared locks those inserts' foreign-key
        checks hold, and deadlock against them; a named lock per SKU (GET_LOCK, released
        right after commit or rollback) waits on nothing but other commits. SQLite: its
        single writer already serialises every commit.
        """
        if self.backend.name == "mysql":
            for sku in sorted(set(skus)):
                name = "sg-ev:" + hashlib.blake2b(sku.encode(), digest_size=20).hexdigest()
                got = await self.connection.execute(
                    text("SELECT GET_LOCK(:name, :wait_s)"), {"name": name, "wait_s": 10}
                )
                self.named_locks += 1
                if got.scalar() != 1:
                    raise RetryableConflict(f"events lock of {sku} not free")
        elif self.backend.row_locks:
            from stockguard.stores.sql.buckets import lock_levels  # buckets imports tx

            await lock_levels(self, skus)

    async def release_named_locks(self) -> None:
        """After commit or rollback: the named locks are the session's, not the transaction's."""
        if self.named_locks:
            self.named_locks = 0
            await self.connection.execute(text("SELECT RELEASE_ALL_LOCKS()"))

    async def insert_events(self, events: Sequence[Event]) -> None:
        """One multi-row insert, whatever the number of events (a coalesced batch's too)."""
        if events:
            await self.connection.execute(insert(t.stock_events), event_rows(events))

    async def lines_of(self, reservation_ids: Sequence[str]) -> dict[str, list[Line]]:
        return await self._lines(list(reservation_ids))

    async def _lines(self, ids: Sequence[str]) -> dict[str, list[Line]]:
        """The lines of ``ids``, with the allocations of located lines: one more query only
        when some line has them (``allocated``), so a shop without locations pays none."""
        lines: dict[str, list[Line]] = {rid: [] for rid in ids}
        allocated: list[str] = []
        for chunk in _chunks(ids):
            for row in await self.connection.execute(
                select(t.reservation_lines).where(t.reservation_lines.c.reservation_id.in_(chunk))
            ):
                lines[row.reservation_id].append(Line(row.sku, row.quantity, row.backordered))
                if row.allocated:
                    allocated.append(row.reservation_id)
        return await self.attach_allocations(lines, allocated)

    async def attach_allocations(
        self, lines: dict[str, list[Line]], allocated: Sequence[str]
    ) -> dict[str, list[Line]]:
        """``lines`` with the allocations of the reservations in ``allocated`` (those with
        a line whose ``allocated`` flag is set) read and attached to their lines."""
        if not allocated:
            return lines
        drawn = await self.allocations_of(sorted(set(allocated)))
        for rid in set(allocated):
            lines[rid] = [
                Line(
                    line.sku,
                    line.quantity,
                    line.backordered,
                    allocations=drawn.get((rid, line.sku), ()),
                )
                for line in lines[rid]
            ]
        return lines

    async def allocations_of(
        self, ids: Sequence[str]
    ) -> dict[tuple[str, str], tuple[Allocation, ...]]:
        """(reservation id, sku) -> that line's allocations, in the order drawn."""
        c = t.reservation_allocations.c
        found: dict[tuple[str, str], list[Allocation]] = {}
        for chunk in _chunks(list(ids)):
            rows = await self.connection.execute(
                select(c.reservation_id, c.sku, c.location, c.quantity, c.backordered)
                .where(c.reservation_id.in_(chunk))
                .order_by(c.reservation_id, c.sku, c.position)
            )
            for row in rows:
                found.setdefault((row.reservation_id, row.sku), []).append(
                    Allocation(row.location, int(row.quantity), int(row.backordered))
                )
        return {key: tuple(value) for key, value in found.items()}

    async def now_ms(self) -> int:
        value = (await self.connection.execute(select(self.backend.now_ms()))).scalar_one()
        return int(value)

    # ------------------------------------------------------------------ stock levels

    async def levels(self, skus: Sequence[str], *, lock: bool = False) -> dict[str, StockLevel]:
        """Stock rows for ``skus``; with ``lock`` they are row-locked in sorted order."""
        found: dict[str, StockLevel] = {}
        for chunk in _chunks(sorted(set(skus))):
            query = (
                select(
                    t.stock_levels.c.sku,
                    t.stock_levels.c.on_hand,
                    t.stock_levels.c.reserved,
                    t.stock_levels.c.version,
                    t.stock_levels.c.safety_stock,
                    t.stock_levels.c.customer_max,
                    t.stock_levels.c.backorder_max,
                    t.stock_levels.c.located,
                )
                .where(t.stock_levels.c.sku.in_(chunk))
                .order_by(t.stock_levels.c.sku)
            )
            if lock and self.backend.row_locks:
                query = query.with_for_update()
            for row in await self.connection.execute(query):
                found[row.sku] = StockLevel(
                    row.sku,
                    row.on_hand,
                    row.reserved,
                    row.version,
                    row.safety_stock,
                    None if row.customer_max is None else int(row.customer_max),
                    row.backorder_max,
                    bool(row.located),
                )
        return found

    async def customer_units(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Units each (customer_id, sku) pair holds or bought (held + confirmed lines),
        counted from the reservations themselves: nothing to keep in step on release,
        expiry or partial release. Callers hold the SKU rows locked (or rely on a version
        write failing), so no hold of the same SKU commits between this and their write;
        ``ix_reservations_customer`` keeps it to the customer's own reservations."""
        if not pairs:
            return {}
        r, ln = t.reservations.c, t.reservation_lines.c
        customers = sorted({customer for customer, _ in pairs})
        skus = sorted({sku for _, sku in pairs})
        rows = await self.connection.execute(
            select(r.customer_id, ln.sku, func.sum(ln.quantity))
            .select_from(t.reservations.join(t.reservation_lines, ln.reservation_id == r.id))
            .where(
                r.customer_id.in_(customers),
                ln.sku.in_(skus),
                r.status.in_([Status.HELD.value, Status.CONFIRMED.value]),
            )
            .group_by(r.customer_id, ln.sku)
        )
        return {(customer, sku): int(units) for customer, sku, units in rows}

    async def policy(self, sku: str, *, lock: bool = False) -> domain.Policy | None:
        """The SKU's stock policy (docs/design.md#stock-policy); None: no such SKU."""
        c = t.stock_levels.c
        query = select(c.safety_stock, c.backorder_max, c.customer_max, c.low_stock_threshold)
        query = query.where(c.sku == sku)
        if lock and self.backend.row_locks:
            query = query.with_for_update()
        row = (await self.connection.execute(query)).first()
        if row is None:
            return None
        return domain.Policy(
            int(row.safety_stock),
            int(row.backorder_max),
            None if row.customer_max is None else int(row.customer_max),
            None if row.low_stock_threshold is None else int(row.low_stock_threshold),
        )

    async def write_policy(self, sku: str, policy: domain.Policy, now_ms: int) -> None:
        """All four fields at once, on the row the caller locked; the version moves, so an
        optimistic writer that read the old policy retries on the new one."""
        await self.connection.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == sku)
            .values(
                safety_stock=policy.safety_stock,
                backorder_max=policy.backorder_max,
                customer_max=policy.customer_max,
                low_stock_threshold=policy.low_stock_threshold,
                version=t.stock_levels.c.version + 1,
                updated_at_ms=now_ms,
            )
        )

    async def add_reserved_if_available(self, sku: str, quantity: int, now_ms: int) -> bool:
        """docs/design.md#conditional: holds only if enough is available, safety stock
        kept out (docs/design.md#safety-stock). A SKU with a per-customer cap or a
        backorder allowance updates no row here: the caller then decides it on the locked
        row (both tests are in the same statement, so a SKU without them costs nothing
        more), where the units a hold puts on backorder can be told
        (docs/design.md#backorders)."""
        c = t.stock_levels.c
        result = await self.connection.execute(
            update(t.stock_levels)
            .where(
                c.sku == sku,
                c.on_hand - c.reserved - c.safety_stock >= quantity,
                c.customer_max.is_(None),
                c.backorder_max == 0,
                c.located == False,  # noqa: E712 (SQL, not Python)
            )
            .values(
                reserved=t.stock_levels.c.reserved + quantity,
                version=t.stock_levels.c.version + 1,
                updated_at_ms=now_ms,
            )
        )
        return result.rowcount == 1

    async def write_reserved_if_version(
        self, level: StockLevel, reserved_new: int, now_ms: int
    ) -> bool:
        """Optimistic write: applies only if nobody changed the row since it was read."""
        result = await self.connection.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == level.sku, t.stock_levels.c.version == level.version)
            .values(reserved=reserved_new, version=level.version + 1, updated_at_ms=now_ms)
        )
        return result.rowcount == 1

    async def add_reserved(self, deltas: Mapping[str, int], now_ms: int) -> None:
        """Moves ``reserved`` by a signed amount per SKU, on rows the caller may modify."""
        for sku in sorted(deltas):
            if deltas[sku] == 0:
                continue
            await self.connection.execute(
                update(t.stock_levels)
                .where(t.stock_levels.c.sku == sku)
                .values(
                    reserved=t.stock_levels.c.reserved + deltas[sku],
                    version=t.stock_levels.c.version + 1,
                    updated_at_ms=now_ms,
                )
            )

    async def move_levels(self, deltas: Mapping[str, tuple[int, int]], now_ms: int) -> None:
        """Moves (on_hand, reserved) of stock rows by a signed amount per SKU, in one
        statement (an executemany) whatever the number of SKUs; the caller locked the rows.

        A batch of a mixed workload moves ~20-70 SKUs; one Core ``UPDATE`` per SKU cost a
        round trip and ~0.3 ms of expression building each, all of it while the batch held
        the hottest rows (docs/benchmarks.md#mixed-workload-coalescing-vs-redis).
        """
        rows = [
            {"sku": sku, "on_hand": on_hand, "reserved": reserved, "now_ms": now_ms}
            for sku, (on_hand, reserved) in sorted(deltas.items())
            if on_hand or reserved
        ]
        if len(rows) == 1:
            await self.connection.execute(_MOVE_LEVEL, rows[0])
        elif rows:
            await self.connection.execute(_MOVE_LEVEL, rows)

    async def sell(self, lines: Sequence[Line], reservation_id: str, now_ms: int) -> None:
        """Confirmed lines leave both ``on_hand`` and ``reserved``, and enter the ledger:
        per allocation, at the location each unit was held (docs/locations.md#settling)."""
        at_default = {line.sku: line for line in lines if not line.allocations}
        elsewhere: dict[tuple[str, str], int] = {}
        for line in lines:
            for allocation in line.allocations:
                if allocation.location == domain.DEFAULT_LOCATION_CODE:
                    at_default[line.sku] = Line(line.sku, allocation.quantity)
                else:
                    elsewhere[(line.sku, allocation.location)] = allocation.quantity
        for sku in sorted(at_default):
            quantity = at_default[sku].quantity
            await self.connection.execute(
                update(t.stock_levels)
                .where(t.stock_levels.c.sku == sku)
                .values(
                    on_hand=t.stock_levels.c.on_hand - quantity,
                    reserved=t.stock_levels.c.reserved - quantity,
                    version=t.stock_levels.c.version + 1,
                    updated_at_ms=now_ms,
                )
            )
        after = await self.levels(list(at_default))
        movements = [
            Movement(now_ms, sku, -line.quantity, after[sku].on_hand, "sale", reservation_id)
            for sku, line in sorted(at_default.items())
        ]
        if elsewhere:
            await self.move_location_levels(
                {key: (-quantity, -quantity) for key, quantity in elsewhere.items()}, now_ms
            )
            levels = await self.location_levels(sorted({sku for sku, _ in elsewhere}))
            movements += [
                Movement(
                    now_ms,
                    sku,
                    -quantity,
                    levels[sku][location].on_hand,
                    "sale",
                    reservation_id,
                    location,
                )
                for (sku, location), quantity in sorted(elsewhere.items())
            ]
        await self.record_movements(movements)

    async def write_on_hand(self, sku: str, on_hand: int, now_ms: int) -> None:
        await self.connection.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == sku)
            .values(on_hand=on_hand, version=t.stock_levels.c.version + 1, updated_at_ms=now_ms)
        )

    async def insert_levels(self, on_hand_by_sku: Mapping[str, int], now_ms: int) -> None:
        if not on_hand_by_sku:
            return
        await self.connection.execute(
            insert(t.stock_levels),
            [
                {
                    "sku": sku,
                    "on_hand": on_hand,
                    "reserved": 0,
                    "version": 0,
                    "updated_at_ms": now_ms,
                }
                for sku, on_hand in sorted(on_hand_by_sku.items())
            ],
        )

    async def record_movements(self, movements: Sequence[Movement]) -> None:
        rows = [
            {
                "sku": m.sku,
                "at_ms": m.at_ms,
                "delta": m.delta,
                "on_hand_after": m.on_hand_after,
                "reason": m.reason,
                "reservation_id": m.reservation_id,
                "location": m.location,
            }
            for m in movements
            if m.delta != 0
        ]
        if rows:
            await self.connection.execute(insert(t.stock_movements), rows)
            if self.recorder is not None:
                self.recorder.moved(movements)

    # ------------------------------------------------------------------ reservations

    async def insert_reservations(self, reservations: Sequence[Reservation]) -> None:
        """All rows of a batch in two multi-row inserts, whatever the batch size."""
        if not reservations:
            return
        if self.recorder is not None:
            self.recorder.held(reservations)
        await self.connection.execute(
            insert(t.reservations),
            [
                {
                    "id": r.id,
                    "order_id": r.order_id,
                    "customer_id": r.customer_id,
                    "status": r.status.value,
                    "expires_at_ms": r.expires_at_ms,
                    "created_at_ms": r.created_at_ms,
                }
                for r in reservations
            ],
        )
        await self.connection.execute(
            insert(t.reservation_lines),
            [
                {
                    "reservation_id": r.id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "backordered": line.backordered,
                    "allocated": bool(line.allocations),
                }
                for r in reservations
                for line in r.lines
            ],
        )
        await self.insert_allocations(reservations)

    async def insert_allocations(self, reservations: Sequence[Reservation]) -> None:
        """The allocations of the located lines of ``reservations`` (none: no statement)."""
        allocations = [
            {
                "reservation_id": r.id,
                "sku": line.sku,
                "location": allocation.location,
                "position": position,
                "quantity": allocation.quantity,
                "backordered": allocation.backordered,
            }
            for r in reservations
            for line in r.lines
            for position, allocation in enumerate(line.allocations)
        ]
        if allocations:
            await self.connection.execute(insert(t.reservation_allocations), allocations)

    async def reservation(self, reservation_id: str, *, lock: bool = False) -> Reservation | None:
        found = await self._reservations(t.reservations.c.id == reservation_id, lock=lock)
        return found[0] if found else None

    async def reservation_by_order(self, order_id: str) -> Reservation | None:
        found = await self._reservations(t.reservations.c.order_id == order_id)
        return found[0] if found else None

    async def reservations_by_order(self, order_ids: Sequence[str]) -> dict[str, Reservation]:
        found: dict[str, Reservation] = {}
        for chunk in _chunks(sorted(set(order_ids))):
            for r in await self._reservations(t.reservations.c.order_id.in_(chunk)):
                found[r.order_id] = r
        return found

    async def reservations_by_id(
        self, reservation_ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, Reservation]:
        """Reservations by id; with ``lock`` their rows are locked in id order."""
        found: dict[str, Reservation] = {}
        for chunk in _chunks(sorted(set(reservation_ids))):
            query = (
                select(t.reservations)
                .where(t.reservations.c.id.in_(chunk))
                .order_by(t.reservations.c.id)
            )
            if lock and self.backend.row_locks:
                query = query.with_for_update()
            rows = (await self.connection.execute(query)).all()
            found.update((r.id, r) for r in await self.reservations_from_rows(rows))
        return found

    async def due_reservation_ids(self, now_ms: int, limit: int) -> list[str]:
        """Held reservations past expiry, locked; rows another sweeper holds are skipped."""
        query = (
            select(t.reservations.c.id)
            .where(
                t.reservations.c.status == Status.HELD.value,
                t.reservations.c.expires_at_ms <= now_ms,
            )
            .order_by(t.reservations.c.expires_at_ms)
            .limit(limit)
        )
        if self.backend.row_locks:
            query = query.with_for_update(skip_locked=self.backend.skip_locked)
        return list((await self.connection.execute(query)).scalars())

    async def end_reservations(self, ids: Sequence[str], status: Status, now_ms: int) -> int:
        """held → ``status``, conditional on still being held: a reservation ends once (I4)."""
        assert status.is_terminal
        ended = 0
        for chunk in _chunks(list(ids)):
            result = await self.connection.execute(
                update(t.reservations)
                .where(t.reservations.c.id.in_(chunk), t.reservations.c.status == Status.HELD.value)
                .values(status=status.value, ended_at_ms=now_ms)
            )
            ended += result.rowcount
        if self.recorder is not None:
            self.recorder.ended(ids, status, now_ms)  # the callers hold the rows as held
        return ended

    async def end_each(self, ended: Mapping[str, Status], now_ms: int) -> int:
        """held -> its own terminal status for every id of ``ended`` (I4): one
        ``end_reservations`` per status; returns how many rows changed."""
        by_status: dict[Status, list[str]] = {}
        for reservation_id, status in ended.items():
            by_status.setdefault(status, []).append(reservation_id)
        return sum([await self.end_reservations(ids, s, now_ms) for s, ids in by_status.items()])

    async def held_quantity_by_sku(self, ids: Sequence[str]) -> dict[str, int]:
        """Units the lines of ``ids`` hold at the default location, per SKU (one aggregated
        stock update per SKU); ``held_elsewhere`` has the rest of located lines."""
        totals: dict[str, int] = {}
        ln = t.reservation_lines.c
        for chunk in _chunks(list(ids)):
            rows = await self.connection.execute(
                select(ln.sku, func.sum(ln.quantity))
                .where(ln.reservation_id.in_(chunk), ln.allocated == False)  # noqa: E712
                .group_by(ln.sku)
            )
            for sku, total in rows:
                totals[sku] = totals.get(sku, 0) + int(total)
        for (sku, location), total in (await self._held_allocated(ids)).items():
            if location == domain.DEFAULT_LOCATION_CODE:
                totals[sku] = totals.get(sku, 0) + total
        return totals

    async def held_elsewhere(self, ids: Sequence[str]) -> dict[tuple[str, str], int]:
        """Units the lines of ``ids`` hold at locations other than the default one, per
        (sku, location): what an expiry gives back to ``location_levels``."""
        return {
            key: total
            for key, total in (await self._held_allocated(ids)).items()
            if key[1] != domain.DEFAULT_LOCATION_CODE
        }

    async def _held_allocated(self, ids: Sequence[str]) -> dict[tuple[str, str], int]:
        c = t.reservation_allocations.c
        totals: dict[tuple[str, str], int] = {}
        for chunk in _chunks(list(ids)):
            rows = await self.connection.execute(
                select(c.sku, c.location, func.sum(c.quantity))
                .where(c.reservation_id.in_(chunk))
                .group_by(c.sku, c.location)
            )
            for sku, location, total in rows:
                totals[(sku, location)] = totals.get((sku, location), 0) + int(total)
        return totals

    async def write_expiry(self, reservation_id: str, expires_at_ms: int) -> None:
        """A held reservation's new expiry (an extension), on its locked row."""
        await self.connection.execute(
            update(t.reservations)
            .where(
                t.reservations.c.id == reservation_id,
                t.reservations.c.status == Status.HELD.value,
            )
            .values(expires_at_ms=expires_at_ms)
        )

    async def shrink_lines(
        self, reservation: Reservation, given: Sequence[Line], now_ms: int
    ) -> None:
        """A partial release's lines: each given-back line shrinks by its quantity, and a
        line reaching 0 is deleted (the schema has no 0-unit line). ``reserved`` is the
        caller's next statement; the recorder hears of it here, where every store does."""
        left = {line.sku: line for line in domain.remaining_lines(reservation.lines, given)}
        c = t.reservation_lines.c
        for line in sorted(given, key=lambda line: line.sku):
            where = (c.reservation_id == reservation.id, c.sku == line.sku)
            if line.sku in left:
                await self.connection.execute(
                    update(t.reservation_lines)
                    .where(*where)
                    .values(
                        quantity=left[line.sku].quantity, backordered=left[line.sku].backordered
                    )
                )
            else:
                await self.connection.execute(delete(t.reservation_lines).where(*where))
            await self._rewrite_allocations(reservation, line.sku, left.get(line.sku))
        if self.recorder is not None:
            self.recorder.learn([reservation])
            self.recorder.released_part(reservation.id, given, now_ms)

    async def _rewrite_allocations(
        self, reservation: Reservation, sku: str, left: Line | None
    ) -> None:
        """A located line's allocations after a partial release: what is left of each."""
        held = next((line for line in reservation.lines if line.sku == sku), None)
        if held is None or not held.allocations:
            return
        c = t.reservation_allocations.c
        await self.connection.execute(
            delete(t.reservation_allocations).where(
                c.reservation_id == reservation.id, c.sku == sku
            )
        )
        if left is not None and left.allocations:
            await self.connection.execute(
                insert(t.reservation_allocations),
                [
                    {
                        "reservation_id": reservation.id,
                        "sku": sku,
                        "location": allocation.location,
                        "position": position,
                        "quantity": allocation.quantity,
                        "backordered": allocation.backordered,
                    }
                    for position, allocation in enumerate(left.allocations)
                ],
            )

    async def _reservations(
        self, condition: ColumnElement[bool], *, lock: bool = False
    ) -> list[Reservation]:
        query = select(t.reservations).where(condition)
        if lock and self.backend.row_locks:
            query = query.with_for_update()
        rows = (await self.connection.execute(query)).all()
        return await self.reservations_from_rows(rows)

    async def reservations_from_rows(self, rows: Sequence[Row[Any]]) -> list[Reservation]:
        if not rows:
            return []
        lines = await self._lines([row.id for row in rows])
        found = [self.reservation_of(row, lines[row.id]) for row in rows]
        if self.recorder is not None:
            self.recorder.learn(found)
        return found

    @staticmethod
    def reservation_of(row: Row[Any], lines: Sequence[Line]) -> Reservation:
        """A reservation from its ``reservations`` row and its lines (in any order)."""
        return Reservation(
            id=row.id,
            order_id=row.order_id,
            customer_id=row.customer_id,
            status=Status(row.status),
            lines=tuple(sorted(lines, key=lambda line: line.sku)),
            expires_at_ms=row.expires_at_ms,
            created_at_ms=row.created_at_ms,
        )

    # ------------------------------------------------------------------ locations

    async def locations(self) -> dict[str, Location]:
        """Every location by code (at most ``LOCATIONS_MAX``), ``default`` included."""
        c = t.locations.c
        rows = await self.connection.execute(
            select(c.code, c.name, c.priority, c.active).order_by(c.priority, c.code)
        )
        return {
            row.code: Location(row.code, row.name, int(row.priority), bool(row.active))
            for row in rows
        }

    async def insert_location(self, location: Location, now_ms: int) -> None:
        await self.connection.execute(
            insert(t.locations).values(
                code=location.code,
                name=location.name,
                priority=location.priority,
                active=location.active,
                created_at_ms=now_ms,
            )
        )

    async def write_location(self, location: Location) -> None:
        await self.connection.execute(
            update(t.locations)
            .where(t.locations.c.code == location.code)
            .values(name=location.name, priority=location.priority, active=location.active)
        )

    async def location_levels(
        self, skus: Sequence[str], *, lock: bool = False
    ) -> dict[str, dict[str, LocationLevel]]:
        """The levels of ``skus`` at locations other than the default one (whose level is
        the SKU's ``stock_levels`` row); with ``lock``, row-locked in (sku, location)
        order, after the SKU rows, as every writer takes them."""
        c = t.location_levels.c
        found: dict[str, dict[str, LocationLevel]] = {}
        for chunk in _chunks(sorted(set(skus))):
            query = (
                select(
                    c.sku,
                    c.location,
                    c.on_hand,
                    c.reserved,
                    c.version,
                    c.safety_stock,
                    c.backorder_max,
                )
                .where(c.sku.in_(chunk))
                .order_by(c.sku, c.location)
            )
            if lock and self.backend.row_locks:
                query = query.with_for_update()
            for row in await self.connection.execute(query):
                found.setdefault(row.sku, {})[row.location] = LocationLevel(
                    row.sku,
                    row.location,
                    int(row.on_hand),
                    int(row.reserved),
                    int(row.version),
                    int(row.safety_stock),
                    int(row.backorder_max),
                )
        return found

    async def move_location_levels(
        self, deltas: Mapping[tuple[str, str], tuple[int, int]], now_ms: int
    ) -> None:
        """Moves (on_hand, reserved) of levels at other locations by a signed amount per
        (sku, location), in one statement; the caller locked the rows (or relies on I1's
        CHECK, as the conditional path does)."""
        rows = [
            {
                "sku": sku,
                "location": location,
                "on_hand": on_hand,
                "reserved": reserved,
                "now_ms": now_ms,
            }
            for (sku, location), (on_hand, reserved) in sorted(deltas.items())
            if on_hand or reserved
        ]
        if len(rows) == 1:
            await self.connection.execute(_MOVE_LOCATION_LEVEL, rows[0])
        elif rows:
            await self.connection.execute(_MOVE_LOCATION_LEVEL, rows)

    async def write_location_reserved_if_version(
        self, level: LocationLevel, reserved_new: int, now_ms: int
    ) -> bool:
        """Optimistic write of a level at another location (as ``write_reserved_if_version``)."""
        c = t.location_levels.c
        result = await self.connection.execute(
            update(t.location_levels)
            .where(c.sku == level.sku, c.location == level.location, c.version == level.version)
            .values(reserved=reserved_new, version=level.version + 1, updated_at_ms=now_ms)
        )
        return result.rowcount == 1

    async def insert_location_level(
        self, sku: str, location: str, on_hand: int, now_ms: int
    ) -> None:
        """A SKU's first level at ``location`` (not the default one): the SKU's row, which
        the caller locked, becomes ``located``, so every hold of it from now on goes
        through the allocation policy."""
        await self.connection.execute(
            insert(t.location_levels).values(
                sku=sku,
                location=location,
                on_hand=on_hand,
                reserved=0,
                version=0,
                safety_stock=0,
                backorder_max=0,
                updated_at_ms=now_ms,
            )
        )
        await self.connection.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == sku)
            .values(located=True, version=t.stock_levels.c.version + 1, updated_at_ms=now_ms)
        )

    async def write_location_level(self, level: LocationLevel, now_ms: int) -> None:
        """on_hand, safety stock and allowance of a level at another location, on its
        locked row (an admin edit; ``reserved`` is the holds')."""
        c = t.location_levels.c
        await self.connection.execute(
            update(t.location_levels)
            .where(c.sku == level.sku, c.location == level.location)
            .values(
                on_hand=level.on_hand,
                safety_stock=level.safety_stock,
                backorder_max=level.backorder_max,
                version=c.version + 1,
                updated_at_ms=now_ms,
            )
        )

    # ------------------------------------------------------------------ products

    async def insert_product(
        self,
        product_id: str,
        name: str,
        options: Mapping[str, Sequence[str]],
        variants: Sequence[tuple[str, Mapping[str, str]]],
        now_ms: int,
    ) -> None:
        await self.connection.execute(
            insert(t.products).values(
                id=product_id,
                name=name,
                options_json=json.dumps({k: list(v) for k, v in options.items()}),
                created_at_ms=now_ms,
            )
        )
        await self.connection.execute(
            insert(t.product_variants),
            [
                {
                    "sku": sku,
                    "product_id": product_id,
                    "position": position,
                    "options_json": json.dumps(dict(opts)),
                }
                for position, (sku, opts) in enumerate(variants)
            ],
        )

    async def product_rows(
        self, product_id: str
    ) -> tuple[str, dict[str, tuple[str, ...]], list[tuple[str, dict[str, str]]]] | None:
        row = (
            await self.connection.execute(select(t.products).where(t.products.c.id == product_id))
        ).first()
        if row is None:
            return None
        variants = [
            (v.sku, json.loads(v.options_json))
            for v in await self.connection.execute(
                select(t.product_variants)
                .where(t.product_variants.c.product_id == product_id)
                .order_by(t.product_variants.c.position)
            )
        ]
        options = {k: tuple(v) for k, v in json.loads(row.options_json).items()}
        return row.name, options, variants

    async def existing_skus(self, skus: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(skus))):
            found.update(
                (
                    await self.connection.execute(
                        select(t.stock_levels.c.sku).where(t.stock_levels.c.sku.in_(chunk))
                    )
                ).scalars()
            )
        return found


def reservation_filters(
    status: Status | None,
    sku: str | None,
    order_id: str | None,
    customer_id: str | None,
    before_seq: int | None,
) -> ColumnElement[bool]:
    """The WHERE clause of the admin reservation list."""
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        conditions.append(t.reservations.c.status == status.value)
    if order_id is not None:
        conditions.append(t.reservations.c.order_id == order_id)
    if customer_id is not None:
        conditions.append(t.reservations.c.customer_id == customer_id)
    if before_seq is not None:
        conditions.append(t.reservations.c.seq < before_seq)
    if sku is not None:
        conditions.append(
            t.reservations.c.id.in_(
                select(t.reservation_lines.c.reservation_id).where(t.reservation_lines.c.sku == sku)
            )
        )
    return and_(True, *conditions)


def event_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Outbox rows; the payload is the event's JSON without its id (the relay gives it)."""
    return [
        {
            "type": e.type.value,
            "sku": e.sku,
            "reservation_id": e.reservation_id,
            "at_ms": e.at_ms,
            "payload": _EVENT_JSON.encode(e.data).decode(),
        }
        for e in events
    ]


_EVENT_JSON = msgspec.json.Encoder()
