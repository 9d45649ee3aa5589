"""Stock events: what one committed unit of work tells the outside world. Pure, no I/O.

A store hands an ``EventRecorder`` the semantic changes a transaction makes (a hold, an
ending, a ledger entry of an admin edit) as it makes them, then — just before commit —
the levels of every touched SKU as they are *after* the transaction. ``build`` turns that
into events: one per reservation transition, one per admin change, and the threshold
crossings (sold out, back in stock, low) judged between the levels before and after the
whole transaction. The "before" is never read: it is the "after" minus the transaction's
own net change, so no extra statement runs before the write (docs/events.md).

Crossings are judged per transaction, not per statement: a batch that takes the last unit
and gives one back in the same commit moved nothing anyone could see, so it says nothing.
That is what makes the events per SKU alternate (sold_out, back_in_stock, sold_out, …)
and end agreeing with the final level.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stockguard.domain.errors import InvalidInput
from stockguard.domain.model import Line, Movement, Reservation, Status

EVENT_SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or goes away; new fields do not bump it."""


class EventType(enum.StrEnum):
    HELD = "reservation.held"
    CONFIRMED = "reservation.confirmed"
    RELEASED = "reservation.released"
    EXPIRED = "reservation.expired"
    STOCK_CHANGED = "stock.changed"
    SOLD_OUT = "stock.sold_out"
    BACK_IN_STOCK = "stock.back_in_stock"
    LOW = "stock.low"

    @property
    def per_reservation(self) -> bool:
        return self.value.startswith("reservation.")


EVENT_TYPES_ALL = frozenset(EventType)
EVENT_TYPES_STOCK = frozenset(t for t in EventType if not t.per_reservation)
_ENDED = {
    Status.CONFIRMED: EventType.CONFIRMED,
    Status.RELEASED: EventType.RELEASED,
    Status.EXPIRED: EventType.EXPIRED,
}


def parse_event_types(text: str) -> frozenset[EventType]:
    """A setting's list of recorded types: ``all``, ``none``, ``stock`` (every ``stock.*``
    type, no per-reservation events: for the hottest shops), or comma-separated names;
    ``stock.*`` / ``reservation.*`` name a family."""
    chosen: set[EventType] = set()
    for word in (w.strip() for w in text.split(",")):
        if not word or word == "none":
            continue
        if word == "all":
            chosen |= EVENT_TYPES_ALL
        elif word in ("stock", "stock.*"):
            chosen |= EVENT_TYPES_STOCK
        elif word in ("reservation", "reservation.*"):
            chosen |= EVENT_TYPES_ALL - EVENT_TYPES_STOCK
        else:
            try:
                chosen.add(EventType(word))
            except ValueError:
                names = ", ".join(sorted(EventType))
                raise InvalidInput(
                    "events", f"{word!r} is not one of all, none, stock, {names}"
                ) from None
    return frozenset(chosen)


@dataclass(frozen=True, slots=True)
class LevelAfter:
    """A SKU's levels once the transaction is applied, and its low-stock threshold."""

    on_hand: int
    reserved: int
    low_stock_threshold: int | None = None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def as_json(self) -> dict[str, int]:
        return {"on_hand": self.on_hand, "reserved": self.reserved, "available": self.available}


@dataclass(frozen=True, slots=True)
class Event:
    """One event before the outbox gives it its id (``seq``): the row a store inserts."""

    type: EventType
    at_ms: int
    sku: str | None
    reservation_id: str | None
    data: Mapping[str, Any]
    """The type's own fields and ``levels`` (SKU -> levels after), as documented."""

    @property
    def subject_key(self) -> str:
        """What a per-key sink (a NATS subject, per-SKU ordering) groups this event by."""
        return self.sku if self.sku is not None else (self.reservation_id or "")


@dataclass(slots=True)
class EventRecorder:
    """Collects one transaction's changes; ``build`` makes its events (see module doc)."""

    recorded: frozenset[EventType]
    _reservations: list[tuple[EventType, Reservation | str]] = field(default_factory=list)
    _parts: dict[int, tuple[Line, ...]] = field(default_factory=dict)
    """Index in ``_reservations`` -> the lines a partial release gave back."""
    _changes: list[Movement] = field(default_factory=list)
    _lines: dict[str, tuple[Line, ...]] = field(default_factory=dict)
    _created: set[str] = field(default_factory=set)
    _reservation_rows: dict[str, Reservation] = field(default_factory=dict)
    at_ms: int = 0
    """The database time of the transaction's latest change: its events' time."""

    @property
    def pending(self) -> bool:
        return bool(self._reservations or self._changes)

    def held(self, reservations: Iterable[Reservation]) -> None:
        for reservation in reservations:
            self._lines[reservation.id] = reservation.lines
            self._reservation_rows[reservation.id] = reservation
            self._reservations.append((EventType.HELD, reservation))
            self.at_ms = max(self.at_ms, reservation.created_at_ms)

    def ended(self, reservation_ids: Iterable[str], status: Status, at_ms: int) -> None:
        kind = _ENDED[status]
        self._reservations.extend((kind, rid) for rid in reservation_ids)
        self.at_ms = max(self.at_ms, at_ms)

    def released_part(self, reservation_id: str, lines: Sequence[Line], at_ms: int) -> None:
        """Some units of a hold given back while the rest stays held: a
        ``reservation.released`` with ``partial: true`` and the lines given back."""
        self._parts[len(self._reservations)] = tuple(lines)
        self._reservations.append((EventType.RELEASED, reservation_id))
        self.at_ms = max(self.at_ms, at_ms)

    def learn(self, reservations: Iterable[Reservation]) -> None:
        """Reservations the transaction read: an ending needs their lines and order id."""
        for reservation in reservations:
            self._lines.setdefault(reservation.id, reservation.lines)
            self._reservation_rows.setdefault(reservation.id, reservation)

    def learn_lines(self, lines: Mapping[str, Sequence[Line]]) -> None:
        for rid, found in lines.items():
            self._lines.setdefault(rid, tuple(sorted(found, key=lambda line: line.sku)))

    def moved(self, movements: Iterable[Movement]) -> None:
        """Ledger entries: every admin change is one (a sale's is its confirm's)."""
        for movement in movements:
            if movement.reason == "sale" or movement.delta == 0:
                continue
            if movement.reason == "created":
                self._created.add(movement.sku)
            self._changes.append(movement)
            self.at_ms = max(self.at_ms, movement.at_ms)

    def unknown_lines(self) -> list[str]:
        """Ended reservations whose lines the transaction never read: the store reads them."""
        return sorted(
            {
                item
                for index, (_, item) in enumerate(self._reservations)
                if isinstance(item, str) and index not in self._parts
            }
            - set(self._lines)
        )

    def skus(self) -> list[str]:
        """Every SKU whose levels ``build`` needs (the store reads them after its writes)."""
        found = {m.sku for m in self._changes}
        for index, (_, item) in enumerate(self._reservations):
            rid = item if isinstance(item, str) else item.id
            lines = self._parts.get(index) or self._lines.get(rid, ())
            found.update(line.sku for line in lines)
        return sorted(found)

    def build(self, after: Mapping[str, LevelAfter], at_ms: int | None = None) -> list[Event]:
        """The transaction's events, in the order a consumer should apply them."""
        at_ms = self.at_ms if at_ms is None else at_ms
        events: list[Event] = []
        available_change: dict[str, int] = {}

        def levels_of(skus: Iterable[str]) -> dict[str, dict[str, int]]:
            return {sku: after[sku].as_json() for sku in sorted(skus) if sku in after}

        for index, (kind, item) in enumerate(self._reservations):
            rid = item if isinstance(item, str) else item.id
            part = self._parts.get(index)
            lines = part if part is not None else self._lines.get(rid, ())
            sign = -1 if kind is EventType.HELD else (0 if kind is EventType.CONFIRMED else 1)
            for line in lines:
                available_change[line.sku] = (
                    available_change.get(line.sku, 0) + sign * line.quantity
                )
            if kind not in self.recorded:
                continue
            row = self._reservation_rows.get(rid)
            data: dict[str, Any] = {
                "order_id": row.order_id if row else None,
                "customer_id": row.customer_id if row else None,
                "lines": [{"sku": line.sku, "quantity": line.quantity} for line in lines],
                "levels": levels_of(line.sku for line in lines),
            }
            if kind is EventType.HELD and row is not None:
                data["expires_at_ms"] = row.expires_at_ms
            if part is not None:
                data["partial"] = True
            events.append(Event(kind, at_ms, None, rid, data))

        for movement in self._changes:
            if movement.sku not in self._created:
                available_change[movement.sku] = (
                    available_change.get(movement.sku, 0) + movement.delta
                )
            if EventType.STOCK_CHANGED in self.recorded:
                events.append(
                    Event(
                        EventType.STOCK_CHANGED,
                        at_ms,
                        movement.sku,
                        None,
                        {
                            "on_hand_before": movement.on_hand_after - movement.delta,
                            "on_hand_after": movement.on_hand_after,
                            "delta": movement.delta,
                            "reason": movement.reason,
                            "levels": levels_of([movement.sku]),
                        },
                    )
                )

        for sku in sorted(available_change):
            level = after.get(sku)
            if level is None or sku in self._created:
                continue
            before = level.available - available_change[sku]
            for kind in crossings(before, level.available, level.low_stock_threshold):
                if kind in self.recorded:
                    data = {
                        "available_before": before,
                        "levels": levels_of([sku]),
                    }
                    if kind is EventType.LOW:
                        data["threshold"] = level.low_stock_threshold
                    events.append(Event(kind, at_ms, sku, None, data))
        return events


def crossings(before: int, after: int, low_threshold: int | None) -> list[EventType]:
    """The threshold events a move of ``available`` from ``before`` to ``after`` makes.

    ``low`` fires when ``available`` falls into the band ``0 < available <= threshold``
    from above it, so a shop sees "only 3 left" once per fall, not once per sale inside
    the band; a fall straight to 0 is ``sold_out`` alone, and a rise is never ``low``.
    """
    found: list[EventType] = []
    if before > 0 and after <= 0:
        found.append(EventType.SOLD_OUT)
    elif before <= 0 and after > 0:
        found.append(EventType.BACK_IN_STOCK)
    if low_threshold is not None and 0 < after <= low_threshold < before:
        found.append(EventType.LOW)
    return found


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An outbox event with its public id: what the feed and every sink deliver."""

    id: int
    event: Event

    def envelope(self) -> dict[str, Any]:
        """The event as JSON (docs/events.md#envelope): consumers de-duplicate on ``id``."""
        e = self.event
        return {
            "id": self.id,
            "type": e.type.value,
            "schema_version": EVENT_SCHEMA_VERSION,
            "at_ms": e.at_ms,
            "sku": e.sku,
            "reservation_id": e.reservation_id,
            "data": dict(e.data),
        }
