"""An in-memory store that keeps the store contract exactly (``stores/contract.py``).

For tests and for trying stockguard without a database: ``Engine.open("memory://")``.
It implements the same transaction API as the SQL store (``StoreTx``), so the strategies
that need nothing but that API run on it unchanged (conditional, pessimistic, optimistic,
coalescing), with the same shared use cases (``stores/operations.py``) and errors.

* Transactions are serialised by one ``asyncio.Lock`` (what SQLite's ``BEGIN IMMEDIATE``
  does): every lock a SQL transaction could take is held at once, so ``lock=True`` needs
  nothing more. A transaction works on a copy of the state, swapped in on ``commit()``;
  without it nothing it wrote is seen (rollback).
* I1 is checked on every stock write (the SQL schema's ``CHECK``): a write that would
  leave ``reserved`` outside ``0..on_hand + backorder_max`` raises ``CheckViolation``, a
  bug; so is a write to a level at another location (``location_levels``' own ``CHECK``).
* Locations as the SQL tables keep them (docs/locations.md): ``default`` exists from the
  start, and its level of a SKU is the SKU's entry in ``levels``; levels at other
  locations are ``location_levels``, and a SKU with any is ``located``. A held line keeps
  its allocations (``Line.allocations``), the ledger each movement's location.
* order_ids and SKUs are unique (``DuplicateKey``, as the SQL unique indexes).
* The clock is injectable (``clock``: epoch milliseconds); expiry uses nothing else.
* Nothing survives the process (I5 is the SQL stores' job).

Over 350 lines on purpose: the whole transaction API (``MemoryTx``, one method per
``tx.py`` statement) and the listing queries sit next to each other so that a change to
the contract is made in one file for the in-memory side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from stockguard import domain
from stockguard.domain import Line, Movement, Product, Reservation, Status, StockLevel, Variant
from stockguard.domain.events import Event, EventRecorder, EventType, LevelAfter, StoredEvent
from stockguard.domain.kits import Kit
from stockguard.domain.locations import Location, LocationLevel
from stockguard.stores.contract import DuplicateKey
from stockguard.stores.operations import StoreOperations, filter_text, parse_cursor

T = TypeVar("T")

PAGE_MAX = domain.PAGE_LIMIT_MAX
DEFAULT = domain.DEFAULT_LOCATION_CODE
DEFAULT_LOCATION = Location(DEFAULT, "Default", 0, True)
"""The row migration 0009 inserts: every store has it from the start."""


class CheckViolation(Exception):
    """A write would break I1 (``0 <= reserved <= on_hand + backorder_max``), or name a
    SKU or location that does not exist: refused, as the CHECK or foreign key does."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass(slots=True)
class _ProductRow:
    name: str
    options: dict[str, tuple[str, ...]]
    variants: list[tuple[str, dict[str, str]]]


@dataclasses.dataclass(slots=True)
class State:
    """Every table, as plain dictionaries; copied per transaction (shallowly: values are
    immutable, or replaced rather than changed)."""

    levels: dict[str, StockLevel] = dataclasses.field(default_factory=dict)
    reservations: dict[str, Reservation] = dataclasses.field(default_factory=dict)
    by_order: dict[str, str] = dataclasses.field(default_factory=dict)
    seq: dict[str, int] = dataclasses.field(default_factory=dict)
    """Reservation id -> insertion sequence (the listing's cursor)."""
    ended_at_ms: dict[str, int] = dataclasses.field(default_factory=dict)
    movements: list[tuple[int, Movement]] = dataclasses.field(default_factory=list)
    products: dict[str, _ProductRow] = dataclasses.field(default_factory=dict)
    next_seq: int = 1
    events: list[Event] = dataclasses.field(default_factory=list)
    """The outbox in insert order; ``events_seq`` of them have their public id (1..)."""
    events_seq: int = 0
    low_stock_thresholds: dict[str, int] = dataclasses.field(default_factory=dict)
    kits: dict[str, Kit] = dataclasses.field(default_factory=dict)
    policies: dict[str, tuple[int, int, int | None]] = dataclasses.field(default_factory=dict)
    """(safety_stock, backorder_max, customer_max) of SKUs that have a policy; the
    threshold stays in ``low_stock_thresholds`` where the events work keeps it."""
    locations: dict[str, Location] = dataclasses.field(
        default_factory=lambda: {DEFAULT: DEFAULT_LOCATION}
    )
    location_levels: dict[tuple[str, str], LocationLevel] = dataclasses.field(default_factory=dict)
    """(sku, location) -> the level at a location other than the default one."""
    located: set[str] = dataclasses.field(default_factory=set)
    """SKUs with a level at another location (``stock_levels.located``)."""

    def copy(self) -> State:
        return State(
            dict(self.levels),
            dict(self.reservations),
            dict(self.by_order),
            dict(self.seq),
            dict(self.ended_at_ms),
            list(self.movements),
            dict(self.products),
            self.next_seq,
            list(self.events),
            self.events_seq,
            dict(self.low_stock_thresholds),
            dict(self.kits),
            dict(self.policies),
            dict(self.locations),
            dict(self.location_levels),
            set(self.located),
        )


class MemoryTx:
    """One transaction on a copy of the state (``StoreTx``)."""

    def __init__(self, state: State, clock: Callable[[], int]) -> None:
        self.state = state
        self._clock = clock
        self.committed = False
        self.recorder: EventRecorder | None = None

    async def commit(self) -> None:
        recorder = self.recorder
        if recorder is not None and recorder.pending:
            recorder.learn(self.state.reservations[rid] for rid in recorder.unknown_lines())
            # A located SKU is judged on its totals over active locations, as in SQL.
            elsewhere = [
                level
                for (sku, code), level in self.state.location_levels.items()
                if (place := self.state.locations.get(code)) is not None and place.active
            ]
            after = {
                sku: LevelAfter(
                    level.on_hand + sum(lv.on_hand for lv in elsewhere if lv.sku == sku),
                    level.reserved + sum(lv.reserved for lv in elsewhere if lv.sku == sku),
                    self.state.low_stock_thresholds.get(sku),
                )
                for sku in recorder.skus()
                if (level := self.state.levels.get(sku)) is not None
            }
            self.state.events.extend(recorder.build(after))
        self.committed = True

    async def now_ms(self) -> int:
        return self._clock()

    # ------------------------------------------------------------------ stock

    def _put(self, level: StockLevel) -> None:
        allowed = self.state.policies.get(level.sku, (0, 0, None))[1]
        if not 0 <= level.reserved <= level.on_hand + allowed:
            raise CheckViolation(f"{level.sku}: reserved {level.reserved}, on_hand {level.on_hand}")
        self.state.levels[level.sku] = level

    def _move(self, sku: str, on_hand: int, reserved: int) -> None:
        level = self.state.levels.get(sku)
        if level is not None:
            self._put(
                StockLevel(
                    sku, level.on_hand + on_hand, level.reserved + reserved, level.version + 1
                )
            )

    def _level(self, sku: str) -> StockLevel | None:
        """The stored level with its policy's fields and ``located``, as the SQL
        ``levels`` reads them."""
        level = self.state.levels.get(sku)
        if level is None:
            return None
        policy = self.state.policies.get(sku)
        located = sku in self.state.located
        if policy is None and not located:
            return level
        safety, backorder, cap = policy or (0, 0, None)
        return dataclasses.replace(
            level, safety_stock=safety, backorder_max=backorder, customer_max=cap, located=located
        )

    async def levels(self, skus: Sequence[str], *, lock: bool = False) -> dict[str, StockLevel]:
        found = {sku: self._level(sku) for sku in sorted(set(skus))}
        return {sku: level for sku, level in found.items() if level is not None}

    async def add_reserved_if_available(self, sku: str, quantity: int, now_ms: int) -> bool:
        level = self._level(sku)
        if level is None or level.available < quantity or level.customer_max is not None:
            return False
        if level.backorder_max:  # decided on the row, as the SQL statement leaves it
            return False
        if level.located:  # the allocation policy decides it (stores/located.py)
            return False
        self._move(sku, 0, quantity)
        return True

    async def write_reserved_if_version(
        self, level: StockLevel, reserved_new: int, now_ms: int
    ) -> bool:
        current = self.state.levels.get(level.sku)
        if current is None or current.version != level.version:
            return False
        self._put(StockLevel(level.sku, current.on_hand, reserved_new, level.version + 1))
        return True

    async def add_reserved(self, deltas: Mapping[str, int], now_ms: int) -> None:
        for sku in sorted(deltas):
            if deltas[sku]:
                self._move(sku, 0, deltas[sku])

    async def move_levels(self, deltas: Mapping[str, tuple[int, int]], now_ms: int) -> None:
        for sku, (on_hand, reserved) in sorted(deltas.items()):
            if on_hand or reserved:
                self._move(sku, on_hand, reserved)

    async def sell(self, lines: Sequence[Line], reservation_id: str, now_ms: int) -> None:
        """Per allocation, at the location each unit was held (as ``tx.py``): the default
        location's on the SKU's level, the others' on their levels, one sale each."""
        at_default = {line.sku: line.quantity for line in lines if not line.allocations}
        elsewhere: dict[tuple[str, str], int] = {}
        for line in lines:
            for allocation in line.allocations:
                if allocation.location == DEFAULT:
                    at_default[line.sku] = allocation.quantity
                else:
                    elsewhere[(line.sku, allocation.location)] = allocation.quantity
        for sku in sorted(at_default):
            self._move(sku, -at_default[sku], -at_default[sku])
        movements = [
            Movement(now_ms, sku, -quantity, self.state.levels[sku].on_hand, "sale", reservation_id)
            for sku, quantity in sorted(at_default.items())
        ]
        if elsewhere:
            await self.move_location_levels(
                {key: (-quantity, -quantity) for key, quantity in elsewhere.items()}, now_ms
            )
            movements += [
                Movement(
                    now_ms,
                    sku,
                    -quantity,
                    self.state.location_levels[(sku, location)].on_hand,
                    "sale",
                    reservation_id,
                    location,
                )
                for (sku, location), quantity in sorted(elsewhere.items())
            ]
        await self.record_movements(movements)

    async def write_on_hand(self, sku: str, on_hand: int, now_ms: int) -> None:
        level = self.state.levels[sku]
        self._put(StockLevel(sku, on_hand, level.reserved, level.version + 1))

    async def insert_levels(self, on_hand_by_sku: Mapping[str, int], now_ms: int) -> None:
        taken = [sku for sku in on_hand_by_sku if sku in self.state.levels]
        if taken:
            raise DuplicateKey(f"stock_levels: {taken}")
        for sku, on_hand in sorted(on_hand_by_sku.items()):
            self._put(StockLevel(sku, on_hand, 0, 0))

    async def record_movements(self, movements: Sequence[Movement]) -> None:
        for movement in movements:
            if movement.delta != 0:
                self.state.movements.append((self.state.next_seq, movement))
                self.state.next_seq += 1
        if self.recorder is not None:
            self.recorder.moved(movements)

    async def customer_units(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        wanted = set(pairs)
        units: dict[tuple[str, str], int] = {}
        for r in self.state.reservations.values():
            if r.customer_id is None or r.status not in (Status.HELD, Status.CONFIRMED):
                continue
            for line in r.lines:
                key = (r.customer_id, line.sku)
                if key in wanted:
                    units[key] = units.get(key, 0) + line.quantity
        return units

    async def policy(self, sku: str, *, lock: bool = False) -> domain.Policy | None:
        if sku not in self.state.levels:
            return None
        safety, backorder, cap = self.state.policies.get(sku, (0, 0, None))
        return domain.Policy(safety, backorder, cap, self.state.low_stock_thresholds.get(sku))

    async def write_policy(self, sku: str, policy: domain.Policy, now_ms: int) -> None:
        self.state.policies[sku] = (policy.safety_stock, policy.backorder_max, policy.customer_max)
        if policy.low_stock_threshold is None:
            self.state.low_stock_thresholds.pop(sku, None)
        else:
            self.state.low_stock_thresholds[sku] = policy.low_stock_threshold
        level = self.state.levels[sku]
        self._put(dataclasses.replace(level, version=level.version + 1))

    async def existing_skus(self, skus: Sequence[str]) -> set[str]:
        return {sku for sku in skus if sku in self.state.levels}

    # ------------------------------------------------------------------ reservations

    async def insert_reservations(self, reservations: Sequence[Reservation]) -> None:
        if self.recorder is not None:
            self.recorder.held(reservations)
        for r in reservations:
            if r.order_id in self.state.by_order or r.id in self.state.reservations:
                raise DuplicateKey(f"reservations: order_id {r.order_id!r}")
            # Stored as the SQL tables keep a line: its allocations, not the pin it asked for.
            if any(line.location is not None for line in r.lines):
                r = dataclasses.replace(
                    r,
                    lines=tuple(
                        Line(
                            line.sku, line.quantity, line.backordered, allocations=line.allocations
                        )
                        for line in r.lines
                    ),
                )
            self.state.reservations[r.id] = r
            self.state.by_order[r.order_id] = r.id
            self.state.seq[r.id] = self.state.next_seq
            self.state.next_seq += 1

    async def reservation(self, reservation_id: str, *, lock: bool = False) -> Reservation | None:
        return self.state.reservations.get(reservation_id)

    async def reservation_by_order(self, order_id: str) -> Reservation | None:
        found = self.state.by_order.get(order_id)
        return None if found is None else self.state.reservations[found]

    async def reservations_by_order(self, order_ids: Sequence[str]) -> dict[str, Reservation]:
        return {
            order_id: self.state.reservations[self.state.by_order[order_id]]
            for order_id in set(order_ids)
            if order_id in self.state.by_order
        }

    async def reservations_by_id(
        self, reservation_ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, Reservation]:
        return {
            rid: self.state.reservations[rid]
            for rid in sorted(set(reservation_ids))
            if rid in self.state.reservations
        }

    async def due_reservation_ids(self, now_ms: int, limit: int) -> list[str]:
        due = [
            r
            for r in self.state.reservations.values()
            if r.status is Status.HELD and r.expires_at_ms <= now_ms
        ]
        due.sort(key=lambda r: r.expires_at_ms)
        return [r.id for r in due[:limit]]

    async def end_reservations(self, ids: Sequence[str], status: Status, now_ms: int) -> int:
        """held -> ``status``, only while still held: a reservation ends once (I4)."""
        assert status.is_terminal
        ended = 0
        for rid in ids:
            found = self.state.reservations.get(rid)
            if found is not None and found.status is Status.HELD:
                self.state.reservations[rid] = dataclasses.replace(found, status=status)
                self.state.ended_at_ms[rid] = now_ms
                ended += 1
                if self.recorder is not None:
                    self.recorder.learn([found])
                    self.recorder.ended([rid], status, now_ms)
        return ended

    async def end_each(self, ended: Mapping[str, Status], now_ms: int) -> int:
        return sum([await self.end_reservations([rid], s, now_ms) for rid, s in ended.items()])

    async def held_quantity_by_sku(self, ids: Sequence[str]) -> dict[str, int]:
        """Units the lines of ``ids`` hold at the default location, per SKU (unallocated
        lines and default allocations); ``held_elsewhere`` has the rest."""
        totals: dict[str, int] = {}
        for (sku, location), units in self._held(ids).items():
            if location == DEFAULT:
                totals[sku] = totals.get(sku, 0) + units
        return totals

    async def held_elsewhere(self, ids: Sequence[str]) -> dict[tuple[str, str], int]:
        """Units the lines of ``ids`` hold at locations other than the default one."""
        return {key: units for key, units in self._held(ids).items() if key[1] != DEFAULT}

    def _held(self, ids: Sequence[str]) -> dict[tuple[str, str], int]:
        totals: dict[tuple[str, str], int] = {}
        for rid in set(ids):
            for line in self.state.reservations[rid].lines:
                for allocation in line.drawn():
                    key = (line.sku, allocation.location)
                    totals[key] = totals.get(key, 0) + allocation.quantity
        return totals

    async def write_expiry(self, reservation_id: str, expires_at_ms: int) -> None:
        found = self.state.reservations[reservation_id]
        if found.status is Status.HELD:
            self.state.reservations[reservation_id] = dataclasses.replace(
                found, expires_at_ms=expires_at_ms
            )

    async def shrink_lines(
        self, reservation: Reservation, given: Sequence[Line], now_ms: int
    ) -> None:
        found = self.state.reservations[reservation.id]
        self.state.reservations[reservation.id] = dataclasses.replace(
            found, lines=domain.remaining_lines(found.lines, given)
        )
        if self.recorder is not None:
            self.recorder.learn([found])
            self.recorder.released_part(reservation.id, given, now_ms)

    # ------------------------------------------------------------------ locations

    def _put_location(self, level: LocationLevel) -> None:
        """The I1 of a level at another location (``ck_location_never_oversold``)."""
        if level.backorder_max < 0 or not (
            0 <= level.reserved <= level.on_hand + level.backorder_max
        ):
            raise CheckViolation(
                f"{level.sku}@{level.location}: reserved {level.reserved},"
                f" on_hand {level.on_hand}, backorder_max {level.backorder_max}"
            )
        self.state.location_levels[(level.sku, level.location)] = level

    async def locations(self) -> dict[str, Location]:
        """Every location by code in (priority, code) order, ``default`` included."""
        found = sorted(self.state.locations.values(), key=lambda lc: (lc.priority, lc.code))
        return {location.code: location for location in found}

    async def insert_location(self, location: Location, now_ms: int) -> None:
        if location.code in self.state.locations:
            raise DuplicateKey(f"locations: {location.code}")
        self.state.locations[location.code] = location

    async def write_location(self, location: Location) -> None:
        if location.code in self.state.locations:
            self.state.locations[location.code] = location

    async def location_levels(
        self, skus: Sequence[str], *, lock: bool = False
    ) -> dict[str, dict[str, LocationLevel]]:
        """The levels of ``skus`` at locations other than the default one."""
        found: dict[str, dict[str, LocationLevel]] = {}
        codes = sorted(code for code in self.state.locations if code != DEFAULT)
        for sku in sorted(set(skus)):
            for code in codes:
                level = self.state.location_levels.get((sku, code))
                if level is not None:
                    found.setdefault(sku, {})[code] = level
        return found

    async def move_location_levels(
        self, deltas: Mapping[tuple[str, str], tuple[int, int]], now_ms: int
    ) -> None:
        for (sku, location), (on_hand, reserved) in sorted(deltas.items()):
            level = self.state.location_levels.get((sku, location))
            if level is not None and (on_hand or reserved):
                self._put_location(
                    dataclasses.replace(
                        level,
                        on_hand=level.on_hand + on_hand,
                        reserved=level.reserved + reserved,
                        version=level.version + 1,
                    )
                )

    async def write_location_reserved_if_version(
        self, level: LocationLevel, reserved_new: int, now_ms: int
    ) -> bool:
        current = self.state.location_levels.get((level.sku, level.location))
        if current is None or current.version != level.version:
            return False
        self._put_location(
            dataclasses.replace(current, reserved=reserved_new, version=level.version + 1)
        )
        return True

    async def insert_location_level(
        self, sku: str, location: str, on_hand: int, now_ms: int
    ) -> None:
        """A SKU's first level at ``location``; the SKU becomes ``located`` (its version
        bumped, as the SQL statement does)."""
        if (sku, location) in self.state.location_levels:
            raise DuplicateKey(f"location_levels: {sku}@{location}")
        row = self.state.levels.get(sku)
        if row is None or location not in self.state.locations:
            raise CheckViolation(f"location_levels: no SKU {sku!r} or location {location!r}")
        self._put_location(LocationLevel(sku, location, on_hand, 0, 0, 0, 0))
        self.state.located.add(sku)
        self._put(dataclasses.replace(row, version=row.version + 1))

    async def write_location_level(self, level: LocationLevel, now_ms: int) -> None:
        current = self.state.location_levels.get((level.sku, level.location))
        if current is not None:
            self._put_location(
                dataclasses.replace(
                    current,
                    on_hand=level.on_hand,
                    safety_stock=level.safety_stock,
                    backorder_max=level.backorder_max,
                    version=current.version + 1,
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
        if product_id in self.state.products:
            raise DuplicateKey(f"products: {product_id}")
        self.state.products[product_id] = _ProductRow(
            name,
            {k: tuple(v) for k, v in options.items()},
            [(sku, dict(opts)) for sku, opts in variants],
        )

    async def product_rows(
        self, product_id: str
    ) -> tuple[str, dict[str, tuple[str, ...]], list[tuple[str, dict[str, str]]]] | None:
        row = self.state.products.get(product_id)
        if row is None:
            return None
        return row.name, dict(row.options), list(row.variants)


class MemoryStore(StoreOperations):
    """The store contract in process memory; ``clock`` gives the store's time in epoch ms."""

    def __init__(self, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.clock = clock
        self.state = State()
        self._lock = asyncio.Lock()
        self.counters: Counter[str] = Counter()
        self.recorded_events: frozenset[EventType] = frozenset()

    @classmethod
    def open(cls, url: str = "memory://", **options: Any) -> MemoryStore:
        return cls(**options)

    async def migrate(self) -> None:
        """Nothing to migrate: the tables are dictionaries."""

    async def close(self) -> None:
        """Nothing to release."""

    @asynccontextmanager
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[MemoryTx]:
        async with self._lock:
            tx = MemoryTx(self.state.copy(), self.clock)
            if self.recorded_events and not read_only:
                tx.recorder = EventRecorder(self.recorded_events)
            try:
                yield tx
            finally:  # committed, then raised (a confirm past expiry): the commit stands
                if tx.committed and not read_only:
                    self.state = tx.state

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        return await work()  # transactions never conflict: they run one at a time

    # ------------------------------------------------------------------ read queries

    async def list_reservations(
        self,
        *,
        status: Status | None = None,
        sku: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Reservation], str | None]:
        """Newest first; the cursor is the ``seq`` of the last row of the previous page."""
        before = parse_cursor(cursor)
        sku = filter_text(sku, "sku")
        order_id = filter_text(order_id, "order_id")
        customer_id = filter_text(customer_id, "customer_id")
        state = self.state
        rows = sorted(
            (
                r
                for r in state.reservations.values()
                if (status is None or r.status is status)
                and (order_id is None or r.order_id == order_id)
                and (customer_id is None or r.customer_id == customer_id)
                and (sku is None or any(line.sku == sku for line in r.lines))
                and (before is None or state.seq[r.id] < before)
            ),
            key=lambda r: -state.seq[r.id],
        )
        page = rows[:limit]
        return page, (str(state.seq[page[-1].id]) if len(rows) > limit else None)

    async def list_stock(
        self, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[StockLevel], str | None]:
        prefix = filter_text(prefix, "prefix")
        cursor = filter_text(cursor, "cursor")
        levels = [
            level
            for sku, level in sorted(self.state.levels.items())
            if (not prefix or sku.startswith(prefix)) and (not cursor or sku > cursor)
        ]
        page = levels[:limit]
        return page, (page[-1].sku if len(levels) > limit else None)

    async def movements(
        self, sku: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Movement], str | None]:
        before = parse_cursor(cursor)
        if sku not in self.state.levels:
            raise domain.UnknownSku([sku])
        rows = [
            (seq, m)
            for seq, m in reversed(self.state.movements)
            if m.sku == sku and (before is None or seq < before)
        ]
        page = rows[:limit]
        return [m for _, m in page], (str(page[-1][0]) if len(rows) > limit else None)

    async def list_products(
        self, *, search: str | None = None, limit: int = 50, after: str | None = None
    ) -> list[Product]:
        needle = (filter_text(search, "search") or "").lower()
        start: tuple[str, str] | None = None
        if after is not None:
            if after not in self.state.products:
                raise domain.InvalidInput("cursor", "names no product")
            start = (self.state.products[after].name, after)
        found = sorted(
            (
                (row.name, product_id, row)
                for product_id, row in self.state.products.items()
                if (
                    not needle
                    or needle in row.name.lower()
                    or any(needle in sku.lower() for sku, _ in row.variants)
                )
                and (start is None or (row.name, product_id) > start)
            ),
            key=lambda item: (item[0], item[1]),
        )[:limit]
        return [
            Product(
                product_id,
                row.name,
                dict(row.options),
                tuple(Variant(sku, opts, self.state.levels[sku]) for sku, opts in row.variants),
            )
            for _, product_id, row in found
        ]

    async def list_standalone_stock(
        self, *, search: str | None = None, limit: int = 100
    ) -> list[StockLevel]:
        in_products = {sku for row in self.state.products.values() for sku, _ in row.variants}
        needle = (filter_text(search, "search") or "").lower()
        return [
            level
            for sku, level in sorted(self.state.levels.items())
            if sku not in in_products and (not needle or needle in sku.lower())
        ][:limit]

    # ------------------------------------------------------------------ kits

    async def define_kit(self, kit: Kit) -> tuple[Kit, bool]:
        async with self.transaction() as tx:
            existing = tx.state.kits.get(kit.sku)
            if existing is not None:
                if existing != kit:
                    raise domain.DuplicateSku([kit.sku])
                return existing, False
            if kit.sku in tx.state.levels:
                raise domain.DuplicateSku([kit.sku])
            missing = {c.sku for c in kit.components} - set(tx.state.levels)
            if missing:
                raise domain.UnknownSku(sorted(missing))
            tx.state.kits[kit.sku] = kit
            await tx.commit()
            return kit, True

    async def kits(self, skus: Sequence[str]) -> dict[str, Kit]:
        return {sku: self.state.kits[sku] for sku in set(skus) if sku in self.state.kits}

    async def list_kits(self, *, limit: int = 100, after: str | None = None) -> list[Kit]:
        return [
            self.state.kits[sku] for sku in sorted(self.state.kits) if after is None or sku > after
        ][:limit]

    # ------------------------------------------------------------------ events outbox

    async def set_low_stock_threshold(self, sku: str, threshold: int | None) -> None:
        async with self.transaction() as tx:
            if sku not in tx.state.levels:
                raise domain.UnknownSku([sku])
            if threshold is None:
                tx.state.low_stock_thresholds.pop(sku, None)
            else:
                tx.state.low_stock_thresholds[sku] = threshold
            await tx.commit()

    async def low_stock_threshold(self, sku: str) -> int | None:
        if sku not in self.state.levels:
            raise domain.UnknownSku([sku])
        return self.state.low_stock_thresholds.get(sku)

    async def sequence_events(self, limit: int = 1_000) -> int:
        """Gives the next ``limit`` outbox rows their public ids (``stores/sql/outbox.py``)."""
        async with self._lock:
            todo = min(limit, len(self.state.events) - self.state.events_seq)
            self.state.events_seq += todo
            return todo

    async def events_after(
        self, after: int, limit: int, types: frozenset[EventType] | None = None
    ) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for index in range(max(after, 0), self.state.events_seq):
            event = self.state.events[index]
            if types is None or event.type in types:
                found.append(StoredEvent(index + 1, event))
                if len(found) >= limit:
                    break
        return found

    # ------------------------------------------------------------------ audit

    def audit_caps(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """Each capped SKU's cap and every customer's held + confirmed units of it."""
        caps = {sku: p[2] for sku, p in self.state.policies.items() if p[2] is not None}
        units: Counter[tuple[str, str]] = Counter()
        for r in self.state.reservations.values():
            if r.customer_id is not None and r.status in (Status.HELD, Status.CONFIRMED):
                for line in r.lines:
                    if line.sku in caps:
                        units[(r.customer_id, line.sku)] += line.quantity
        return caps, dict(units)

    def backorder_allowances(self) -> dict[str, int]:
        """Each SKU's ``backorder_max`` where it has one (the audit's I1)."""
        return {sku: policy[1] for sku, policy in self.state.policies.items() if policy[1]}

    def audit_sums(
        self,
    ) -> tuple[
        dict[str, tuple[int, int]], dict[str, int], dict[str, int], dict[str, int], dict[str, int]
    ]:
        """(on_hand, reserved) per SKU, held lines, ledger, confirmed lines and sales per
        SKU: what ``stores/sql/audit.py`` reads from the tables. The SKU's level is the
        default location's, so held units and the ledger are the default location's too
        (unallocated lines and default allocations; movements there); confirmed lines and
        sales are the SKU's wherever sold (I4)."""
        state = self.state
        held: Counter[str] = Counter()
        sold_lines: Counter[str] = Counter()
        for r in state.reservations.values():
            if r.status is Status.HELD:
                for line in r.lines:
                    for allocation in line.drawn():
                        if allocation.location == DEFAULT:
                            held[line.sku] += allocation.quantity
            elif r.status is Status.CONFIRMED:
                for line in r.lines:
                    sold_lines[line.sku] += line.quantity
        ledger: Counter[str] = Counter()
        sales: Counter[str] = Counter()
        for _, m in state.movements:
            if m.location == DEFAULT:
                ledger[m.sku] += m.delta
            if m.reason == "sale":
                sales[m.sku] -= m.delta
        levels = {sku: (lv.on_hand, lv.reserved) for sku, lv in state.levels.items()}
        return levels, dict(held), dict(ledger), dict(sold_lines), dict(sales)

    def audit_locations(
        self,
    ) -> tuple[
        dict[tuple[str, str], tuple[int, int, int]],
        dict[tuple[str, str], int],
        dict[tuple[str, str], int],
        list[tuple[str, str, int, int]],
    ]:
        """Per level at another location: (on_hand, reserved, backorder_max), the held
        allocations there and the ledger there; and every held located line whose
        allocations do not sum to it (reservation id, sku, quantity, allocated)."""
        state = self.state
        levels = {
            key: (lv.on_hand, lv.reserved, lv.backorder_max)
            for key, lv in state.location_levels.items()
        }
        held: Counter[tuple[str, str]] = Counter()
        uneven: list[tuple[str, str, int, int]] = []
        for r in state.reservations.values():
            if r.status is not Status.HELD:
                continue
            for line in r.lines:
                if line.allocations:
                    drawn = sum(a.quantity for a in line.allocations)
                    if drawn != line.quantity:
                        uneven.append((r.id, line.sku, line.quantity, drawn))
                for allocation in line.allocations:
                    if allocation.location != DEFAULT:
                        held[(line.sku, allocation.location)] += allocation.quantity
        ledger: Counter[tuple[str, str]] = Counter()
        for _, m in state.movements:
            if m.location != DEFAULT:
                ledger[(m.sku, m.location)] += m.delta
        return levels, dict(held), dict(ledger), uneven
