"""Writing a batch of stream events into the SQL tables, inside one transaction.

The persister calls ``apply_events`` in the transaction that also moves the stream
position (``redis_offsets``), so a batch lands whole or not at all and a replayed batch
is skipped by position. Row-level checks back that up: a reservation id is unique, and
an ending applies only to a row that is still ``held`` — anything else means SQL and the
stream disagree, and the event is poison rather than applied twice.

Statements run in an order that satisfies every foreign key and CHECK: new stock rows,
products, one aggregated stock update per SKU (its final value is Redis's, which never
oversold), reservation rows, endings, then the ledger in event order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from stockguard import domain
from stockguard.domain import Line, Movement, Reservation, Status
from stockguard.domain.events import Event as OutboxEvent
from stockguard.domain.events import EventRecorder, EventType, LevelAfter
from stockguard.stores.redis.codec import STREAM_START, StreamId
from stockguard.stores.redis.events import (
    Ended,
    Event,
    Extended,
    LocationStockSet,
    PoisonEvent,
    ProductCreated,
    ReleasedPart,
    Reserved,
    StockChanged,
)
from stockguard.stores.sql import schema as t
from stockguard.stores.sql.tx import Tx

DEFAULT = domain.DEFAULT_LOCATION_CODE

# ---------------------------------------------------------------------------- position


@dataclass(frozen=True, slots=True)
class Offset:
    epoch: str
    last_id: StreamId


async def read_offset(tx: Tx, stream: str, *, lock: bool = False) -> Offset | None:
    """The stream position; ``lock`` holds it (and so every persister) until commit."""
    query = select(t.redis_offsets.c.epoch, t.redis_offsets.c.last_id).where(
        t.redis_offsets.c.stream == stream
    )
    if lock and tx.backend.row_locks:
        query = query.with_for_update()
    row = (await tx.connection.execute(query)).first()
    return None if row is None else Offset(row.epoch, StreamId.parse(row.last_id))


async def write_offset(tx: Tx, stream: str, last_id: StreamId, now_ms: int) -> None:
    await tx.connection.execute(
        update(t.redis_offsets)
        .where(t.redis_offsets.c.stream == stream)
        .values(last_id=str(last_id), updated_at_ms=now_ms)
    )


async def start_epoch(tx: Tx, stream: str, epoch: str, now_ms: int) -> None:
    """A fresh load: the stream starts over and older persisters are fenced out."""
    if await read_offset(tx, stream, lock=True) is None:
        await tx.connection.execute(
            insert(t.redis_offsets).values(
                stream=stream, epoch=epoch, last_id=str(STREAM_START), updated_at_ms=now_ms
            )
        )
        return
    await tx.connection.execute(
        update(t.redis_offsets)
        .where(t.redis_offsets.c.stream == stream)
        .values(epoch=epoch, last_id=str(STREAM_START), updated_at_ms=now_ms)
    )


# ---------------------------------------------------------------------------- events


@dataclass
class _Plan:
    """What a batch of events does to the tables, folded in stream order."""

    new_levels: dict[str, int] = field(default_factory=dict)
    products: list[ProductCreated] = field(default_factory=list)
    on_hand: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    new_reservations: dict[str, Reservation] = field(default_factory=dict)
    endings: dict[str, tuple[Status, int]] = field(default_factory=dict)
    older_endings: dict[str, tuple[Status, int]] = field(default_factory=dict)
    older_expiries: dict[str, int] = field(default_factory=dict)
    """Reservations of earlier batches extended in this one: the last new expiry."""
    older_given: dict[str, dict[str, int]] = field(default_factory=dict)
    """Reservations of earlier batches partly released in this one: SKU -> units back."""
    movements: list[Movement] = field(default_factory=list)
    at_ms: int = 0
    located: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(SKU, location other than the default one) -> (on_hand, reserved) change."""
    new_located: list[tuple[str, str]] = field(default_factory=list)
    """Levels an admin created at another location (inserted before any move)."""
    located_policy: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """(SKU, location) -> (safety_stock, backorder_max) an admin set last in the batch."""

    def move(self, sku: str, on_hand: int, reserved: int, location: str = DEFAULT) -> None:
        if location != DEFAULT:
            old = self.located.get((sku, location), (0, 0))
            self.located[(sku, location)] = (old[0] + on_hand, old[1] + reserved)
            return
        self.on_hand[sku] = self.on_hand.get(sku, 0) + on_hand
        self.reserved[sku] = self.reserved.get(sku, 0) + reserved


def plan(events: Sequence[Event]) -> _Plan:
    result = _Plan()
    for event in events:
        if isinstance(event, Reserved):
            reservation = event.reservation
            if reservation.id in result.new_reservations:
                raise PoisonEvent(f"{event.entry_id}: reservation {reservation.id} twice")
            result.new_reservations[reservation.id] = reservation
            for line in reservation.lines:
                for allocation in line.drawn():
                    result.move(line.sku, 0, allocation.quantity, allocation.location)
            result.at_ms = max(result.at_ms, reservation.created_at_ms)
        elif isinstance(event, Ended):
            _plan_ending(result, event)
        elif isinstance(event, Extended):
            _plan_extension(result, event)
        elif isinstance(event, ReleasedPart):
            _plan_release_part(result, event)
        elif isinstance(event, LocationStockSet):
            key = (event.sku, event.location)
            if event.created:
                if key in result.new_located:
                    raise PoisonEvent(f"{event.entry_id}: {key} created twice")
                result.new_located.append(key)
            result.move(event.sku, event.delta, 0, event.location)
            result.located_policy[key] = (event.safety_stock, event.backorder_max)
            result.movements.append(
                Movement(
                    event.at_ms,
                    event.sku,
                    event.delta,
                    event.on_hand_after,
                    "set",
                    None,
                    event.location,
                )
            )
            result.at_ms = max(result.at_ms, event.at_ms)
        elif isinstance(event, StockChanged):
            if event.created:
                if event.sku in result.new_levels:
                    raise PoisonEvent(f"{event.entry_id}: {event.sku} created twice")
                result.new_levels[event.sku] = event.on_hand_after
            else:
                result.move(event.sku, event.delta, 0)
            result.movements.append(
                Movement(
                    event.at_ms, event.sku, event.delta, event.on_hand_after, event.reason, None
                )
            )
            result.at_ms = max(result.at_ms, event.at_ms)
        else:
            result.products.append(event)
            for variant in event.variants:
                if variant.sku in result.new_levels:
                    raise PoisonEvent(f"{event.entry_id}: {variant.sku} created twice")
                result.new_levels[variant.sku] = variant.on_hand
                result.movements.append(
                    Movement(
                        event.at_ms, variant.sku, variant.on_hand, variant.on_hand, "created", None
                    )
                )
            result.at_ms = max(result.at_ms, event.at_ms)
    return result


def _plan_ending(result: _Plan, event: Ended) -> None:
    rid = event.reservation_id
    if rid in result.endings or rid in result.older_endings:
        raise PoisonEvent(f"{event.entry_id}: reservation {rid} ended twice")
    target = result.endings if rid in result.new_reservations else result.older_endings
    target[rid] = (event.status, event.at_ms)
    for line in event.lines:
        for allocation in line.drawn():  # docs/locations.md#settling
            sold = allocation.quantity
            where = allocation.location
            if event.status is not Status.CONFIRMED:
                result.move(line.sku, 0, -sold, where)
                continue
            result.move(line.sku, -sold, -sold, where)
            after = (
                event.on_hand_after.get(line.sku)
                if where == DEFAULT
                else event.on_hand_after_at.get((line.sku, where))
            )
            if after is None:
                raise PoisonEvent(
                    f"{event.entry_id}: no on_hand after the sale of {line.sku} at {where}"
                )
            result.movements.append(
                Movement(event.at_ms, line.sku, -sold, after, "sale", rid, where)
            )
    result.at_ms = max(result.at_ms, event.at_ms)


def _plan_extension(result: _Plan, event: Extended) -> None:
    rid = event.reservation_id
    if rid in result.endings or rid in result.older_endings:
        raise PoisonEvent(f"{event.entry_id}: reservation {rid} extended after it ended")
    new = result.new_reservations.get(rid)
    if new is not None:  # inserted by this batch: with the expiry it has now
        result.new_reservations[rid] = dataclasses.replace(new, expires_at_ms=event.expires_at_ms)
    else:
        result.older_expiries[rid] = event.expires_at_ms
    result.at_ms = max(result.at_ms, event.at_ms)


def _plan_release_part(result: _Plan, event: ReleasedPart) -> None:
    rid = event.reservation_id
    if rid in result.endings or rid in result.older_endings:
        raise PoisonEvent(f"{event.entry_id}: reservation {rid} partly released after it ended")
    for line in event.lines:
        at = {where: n for (sku, where), n in event.given_at.items() if sku == line.sku}
        if sum(at.values()) not in (0, line.quantity):
            raise PoisonEvent(f"{event.entry_id}: {line.sku} given back at the wrong places")
        for where, units in (at or {DEFAULT: line.quantity}).items():
            result.move(line.sku, 0, -units, where)
    new = result.new_reservations.get(rid)
    if new is not None:  # inserted by this batch: with the lines it has now
        result.new_reservations[rid] = dataclasses.replace(
            new, lines=_given_back(new.lines, event.lines, event.entry_id)
        )
    else:
        given = result.older_given.setdefault(rid, {})
        for line in event.lines:
            given[line.sku] = given.get(line.sku, 0) + line.quantity
    result.at_ms = max(result.at_ms, event.at_ms)


def _given_back(held: Sequence[Line], given: Sequence[Line], entry: object) -> tuple[Line, ...]:
    """``held`` less ``given``, refusing (poison) what Redis could not have done."""
    quantities = {line.sku: line.quantity for line in held}
    for line in given:
        if quantities.get(line.sku, 0) < line.quantity:
            raise PoisonEvent(f"{entry}: gives back {line.quantity} of {line.sku}, not held")
    left = domain.remaining_lines(held, given)
    if not left:
        raise PoisonEvent(f"{entry}: a partial release of every unit")
    return left


async def apply_events(tx: Tx, events: Sequence[Event]) -> None:
    """Writes ``events`` (in stream order) into the open transaction ``tx``, with their
    outbox rows when events are on (``outbox_events``)."""
    if not events:
        return
    recorder, tx.recorder = tx.recorder, None  # this batch writes its own, per entry
    todo = plan(events)
    if recorder is not None:
        await tx.insert_events(await outbox_events(tx, events, recorder.recorded))
    if todo.new_levels:
        await tx.insert_levels(todo.new_levels, todo.at_ms)
    for product in todo.products:
        await tx.insert_product(
            product.product_id,
            product.name,
            product.options,
            [(v.sku, v.options) for v in product.variants],
            product.at_ms,
        )
    for sku, location in todo.new_located:
        await tx.insert_location_level(sku, location, 0, todo.at_ms)
    await _move_stock(tx, todo)
    await _move_located(tx, todo)
    await _insert_reservations(tx, todo)
    await _extend_older(tx, todo.older_expiries)
    await _shrink_older(tx, todo.older_given)
    await _end_older(tx, todo.older_endings)
    await tx.record_movements(todo.movements)


async def _move_stock(tx: Tx, todo: _Plan) -> None:
    for sku in sorted(set(todo.on_hand) | set(todo.reserved)):
        on_hand, reserved = todo.on_hand.get(sku, 0), todo.reserved.get(sku, 0)
        if on_hand == 0 and reserved == 0:
            continue
        result = await tx.connection.execute(
            update(t.stock_levels)
            .where(t.stock_levels.c.sku == sku)
            .values(
                on_hand=t.stock_levels.c.on_hand + on_hand,
                reserved=t.stock_levels.c.reserved + reserved,
                version=t.stock_levels.c.version + 1,
                updated_at_ms=todo.at_ms,
            )
        )
        if result.rowcount != 1:
            raise PoisonEvent(f"stock of {sku} changed in Redis but has no SQL row")


async def _move_located(tx: Tx, todo: _Plan) -> None:
    """The levels at other locations (docs/locations.md): one statement per level, its
    final counts and any admin-set policy together, so I1's CHECK judges only the state
    Redis left (Redis checked it at every step)."""
    c = t.location_levels.c
    for key in sorted(set(todo.located) | set(todo.located_policy)):
        on_hand, reserved = todo.located.get(key, (0, 0))
        values: dict[str, Any] = {
            "on_hand": c.on_hand + on_hand,
            "reserved": c.reserved + reserved,
            "version": c.version + 1,
            "updated_at_ms": todo.at_ms,
        }
        if key in todo.located_policy:
            values["safety_stock"], values["backorder_max"] = todo.located_policy[key]
        result = await tx.connection.execute(
            update(t.location_levels).where(c.sku == key[0], c.location == key[1]).values(**values)
        )
        if result.rowcount != 1:
            raise PoisonEvent(f"stock of {key[0]} at {key[1]} changed in Redis, no SQL row")


async def _insert_reservations(tx: Tx, todo: _Plan) -> None:
    """New reservations in their final state: one that ended in the same batch is written
    ended, so the row is inserted once and never updated."""
    if not todo.new_reservations:
        return
    rows = []
    for r in todo.new_reservations.values():
        status, ended_at_ms = todo.endings.get(r.id, (Status.HELD, None))
        rows.append(
            {
                "id": r.id,
                "order_id": r.order_id,
                "customer_id": r.customer_id,
                "status": status.value,
                "expires_at_ms": r.expires_at_ms,
                "created_at_ms": r.created_at_ms,
                "ended_at_ms": ended_at_ms,
            }
        )
    await tx.connection.execute(insert(t.reservations), rows)
    await tx.connection.execute(
        insert(t.reservation_lines),
        [
            {
                "reservation_id": r.id,
                "sku": line.sku,
                "quantity": line.quantity,
                "backordered": line.backordered,  # docs/design.md#backorders
                "allocated": bool(line.allocations),  # docs/locations.md#model
            }
            for r in todo.new_reservations.values()
            for line in r.lines
        ],
    )
    await tx.insert_allocations(list(todo.new_reservations.values()))


async def _extend_older(tx: Tx, expiries: Mapping[str, int]) -> None:
    """New expiries of reservations written by earlier batches, each still held (before
    the batch's endings are written: an extended hold may end later in the same batch)."""
    for rid in sorted(expiries):
        result = await tx.connection.execute(
            update(t.reservations)
            .where(t.reservations.c.id == rid, t.reservations.c.status == Status.HELD.value)
            .values(expires_at_ms=expiries[rid])
        )
        if result.rowcount != 1:
            raise PoisonEvent(f"reservation {rid} is extended in Redis but not held in SQL")


async def _shrink_older(tx: Tx, given: Mapping[str, Mapping[str, int]]) -> None:
    """Lines of reservations written by earlier batches, less the units given back."""
    if not given:
        return
    held = await tx.reservations_by_id(sorted(given), lock=True)
    for rid in sorted(given):
        found = held.get(rid)
        if found is None or found.status is not Status.HELD:
            raise PoisonEvent(f"reservation {rid} is partly released in Redis, not held in SQL")
        back = [Line(sku, q) for sku, q in sorted(given[rid].items())]
        # Backordered units leave first (domain.remaining_lines), as release_part.lua did.
        left = {line.sku: line for line in _given_back(found.lines, back, rid)}
        c = t.reservation_lines.c
        for line in back:
            where = (c.reservation_id == rid, c.sku == line.sku)
            if line.sku in left:
                await tx.connection.execute(
                    update(t.reservation_lines)
                    .where(*where)
                    .values(
                        quantity=left[line.sku].quantity,
                        backordered=left[line.sku].backordered,
                    )
                )
            else:
                await tx.connection.execute(delete(t.reservation_lines).where(*where))
        await _rewrite_allocations(tx, rid, found.lines, left, [line.sku for line in back])


async def _rewrite_allocations(
    tx: Tx, rid: str, held: Sequence[Line], left: Mapping[str, Line], skus: Sequence[str]
) -> None:
    """A partly released hold's allocation rows: what ``shrink_allocations`` left of each
    located line (release_part.lua gave back the same units per location)."""
    c = t.reservation_allocations.c
    located = {line.sku for line in held if line.allocations}
    for sku in sorted(set(skus) & located):
        await tx.connection.execute(
            delete(t.reservation_allocations).where(c.reservation_id == rid, c.sku == sku)
        )
        remaining = left.get(sku)
        if remaining is not None and remaining.allocations:
            await tx.connection.execute(
                insert(t.reservation_allocations),
                [
                    {
                        "reservation_id": rid,
                        "sku": sku,
                        "location": a.location,
                        "position": position,
                        "quantity": a.quantity,
                        "backordered": a.backordered,
                    }
                    for position, a in enumerate(remaining.allocations)
                ],
            )


async def _end_older(tx: Tx, endings: dict[str, tuple[Status, int]]) -> None:
    """Endings of reservations written by earlier batches: each row must still be held."""
    if not endings:
        return
    ids = sorted(endings)
    query = select(t.reservations.c.id, t.reservations.c.status).where(t.reservations.c.id.in_(ids))
    if tx.backend.row_locks:
        query = query.with_for_update()
    found = {row.id: row.status for row in await tx.connection.execute(query)}
    for rid in ids:
        if found.get(rid) != Status.HELD.value:
            raise PoisonEvent(f"reservation {rid} ends in Redis but is {found.get(rid)} in SQL")
    await tx.connection.execute(
        update(t.reservations)
        .where(t.reservations.c.id == bindparam("rid"))
        .values(status=bindparam("new_status"), ended_at_ms=bindparam("at"))
        .execution_options(synchronize_session=False),
        [{"rid": rid, "new_status": endings[rid][0].value, "at": endings[rid][1]} for rid in ids],
    )


async def outbox_events(
    tx: Tx, events: Sequence[Event], recorded: frozenset[EventType]
) -> list[OutboxEvent]:
    """The outbox rows of a batch of stream entries, judged entry by entry.

    Each entry is one Lua script, atomic in Redis: the unit a buyer could observe. So the
    crossings (sold out, back in stock, low) are judged per entry, from the SQL levels as
    they stand before the batch (the persister is their only writer) moved along by each
    entry in stream order, exactly as the SQL strategies judge theirs per transaction.
    """
    touched: set[str] = set()
    older: set[str] = set()
    for event in events:
        if isinstance(event, Reserved):
            touched.update(line.sku for line in event.reservation.lines)
        elif isinstance(event, LocationStockSet):
            touched.add(event.sku)
        elif isinstance(event, (Ended, ReleasedPart)):
            touched.update(line.sku for line in event.lines)
            older.add(event.reservation_id)
        elif isinstance(event, StockChanged):
            touched.add(event.sku)
    running = await tx.levels_after(sorted(touched))

    def move(sku: str, on_hand: int, reserved: int) -> None:
        level = running[sku]
        running[sku] = LevelAfter(
            level.on_hand + on_hand, level.reserved + reserved, level.low_stock_threshold
        )

    rows = await _reservation_rows(tx, sorted(older))
    found: list[OutboxEvent] = []
    for event in events:
        recorder = EventRecorder(recorded)
        if isinstance(event, Reserved):
            rows[event.reservation.id] = event.reservation
            recorder.held([event.reservation])
            for line in event.reservation.lines:
                move(line.sku, 0, _at_default(line))
        elif isinstance(event, Ended):
            known = rows.get(event.reservation_id)
            if known is not None:  # its lines as they ended (after any partial release)
                recorder.learn([dataclasses.replace(known, lines=event.lines)])
            recorder.learn_lines({event.reservation_id: event.lines})
            recorder.ended([event.reservation_id], event.status, event.at_ms)
            sold = event.status is Status.CONFIRMED
            for line in event.lines:
                units = _at_default(line)
                move(line.sku, -units if sold else 0, -units)
        elif isinstance(event, ReleasedPart):
            known = rows.get(event.reservation_id)
            if known is not None:
                recorder.learn([known])
            recorder.released_part(event.reservation_id, event.lines, event.at_ms)
            for line in event.lines:
                elsewhere = sum(
                    n
                    for (sku, at), n in event.given_at.items()
                    if sku == line.sku and at != DEFAULT
                )
                move(line.sku, 0, -(line.quantity - elsewhere))
        elif isinstance(event, LocationStockSet):
            # A level at another location: the SKU's row (what the outbox judges) is the
            # default location's, so it does not move (docs/locations.md#totals).
            recorder.moved(
                [
                    Movement(
                        event.at_ms,
                        event.sku,
                        event.delta,
                        event.on_hand_after,
                        "set",
                        None,
                        event.location,
                    )
                ]
            )
        elif isinstance(event, Extended):
            pass  # no event type says "extended" (docs/events.md); nothing moved
        elif isinstance(event, StockChanged):
            recorder.moved(
                [
                    Movement(
                        event.at_ms, event.sku, event.delta, event.on_hand_after, event.reason, None
                    )
                ]
            )
            if event.created or event.sku not in running:
                running[event.sku] = LevelAfter(event.on_hand_after, 0)
            else:
                move(event.sku, event.delta, 0)
        else:
            recorder.moved(
                [
                    Movement(event.at_ms, v.sku, v.on_hand, v.on_hand, "created", None)
                    for v in event.variants
                ]
            )
            for v in event.variants:
                running[v.sku] = LevelAfter(v.on_hand, 0)
        after = {sku: running[sku] for sku in recorder.skus() if sku in running}
        found.extend(recorder.build(after))
    return found


def _at_default(line: Line) -> int:
    """The units of ``line`` held at the default location (its SKU's row)."""
    return sum(a.quantity for a in line.drawn() if a.location == DEFAULT)


async def _reservation_rows(tx: Tx, ids: Sequence[str]) -> dict[str, Reservation]:
    """Order and customer ids of reservations that end in this batch but began earlier."""
    found: dict[str, Reservation] = {}
    if ids:
        for r in (await tx.reservations_by_id(ids)).values():
            found[r.id] = r
    return found
